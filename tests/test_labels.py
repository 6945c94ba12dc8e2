import pytest

from skinlesion import labels


def test_binary_mapping_is_the_ham10000_convention():
    assert {dx for dx, y in labels.BINARY_LABEL.items() if y == 1} == {"akiec", "bcc", "mel"}
    assert {dx for dx, y in labels.BINARY_LABEL.items() if y == 0} == {"nv", "bkl", "vasc", "df"}
    assert labels.MALIGNANT_DX | labels.BENIGN_DX == set(labels.DX_CODES)
    assert not labels.MALIGNANT_DX & labels.BENIGN_DX


def test_seven_class_indices_are_stable_and_complete():
    assert [labels.label_for(dx, "7class") for dx in labels.DX_CODES] == list(range(7))
    assert labels.class_names("7class") == labels.DX_CODES
    assert [labels.DX_CODES[i] for i in labels.MALIGNANT_CLASS_INDICES] == ["akiec", "bcc", "mel"]
    assert set(labels.DX_NAMES) == set(labels.DX_CODES) == set(labels.HAM10000_DX_COUNTS)
    assert sum(labels.HAM10000_DX_COUNTS.values()) == 10015


def test_unknown_code_and_task_are_named():
    with pytest.raises(KeyError, match="'xyz'"):
        labels.binary_label("xyz")
    with pytest.raises(KeyError, match="'MEL'"):
        labels.label_for("MEL", "7class")
    with pytest.raises(ValueError, match="'3class'"):
        labels.label_for("mel", "3class")
