import pytest

from skinlesion import labels


def test_binary_mapping_is_the_ham10000_convention():
    ham = {dx: y for dx, y in labels.BINARY_LABEL.items() if dx in labels.DX_CODES}
    assert {dx for dx, y in ham.items() if y == 1} == {"akiec", "bcc", "mel"}
    assert {dx for dx, y in ham.items() if y == 0} == {"nv", "bkl", "vasc", "df"}
    # the codes other datasets need: scc and the label-only codes
    assert {dx: labels.BINARY_LABEL[dx] for dx in labels.EXTRA_DX} == {"scc": 1, "benign": 0, "malignant": 1}
    assert labels.MALIGNANT_DX | labels.BENIGN_DX == set(labels.ALL_DX)
    assert not labels.MALIGNANT_DX & labels.BENIGN_DX


def test_seven_class_indices_are_stable_and_complete():
    assert [labels.label_for(dx, "7class") for dx in labels.DX_CODES] == list(range(7))
    assert labels.class_names("7class") == labels.DX_CODES
    assert [labels.DX_CODES[i] for i in labels.MALIGNANT_CLASS_INDICES] == ["akiec", "bcc", "mel"]
    assert set(labels.DX_NAMES) == set(labels.ALL_DX) and set(labels.DX_CODES) == set(labels.HAM10000_DX_COUNTS)
    assert sum(labels.HAM10000_DX_COUNTS.values()) == 10015


def test_unknown_code_and_task_are_named():
    with pytest.raises(KeyError, match="'xyz'"):
        labels.binary_label("xyz")
    with pytest.raises(KeyError, match="'MEL'"):
        labels.label_for("MEL", "7class")
    with pytest.raises(ValueError, match="'3class'"):
        labels.label_for("mel", "3class")
