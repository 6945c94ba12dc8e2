import numpy as np
import pytest
import torch

from skinlesion.models import (WeightsUnavailableError, build_model, get_spec, list_backbones, malignant_probability,
                               set_trainable)
from skinlesion.models.classifier import class_probabilities, parameter_groups
from skinlesion.models.weights import create_backbone

REQUIRED = {"simple_cnn", "resnet50", "vgg16", "inception_v3", "efficientnet_b0", "efficientnet_lite0", "convnext_tiny"}


def test_registry_has_the_seed_and_modern_architectures():
    assert REQUIRED <= set(list_backbones())
    assert get_spec("inception_v3").image_size == 299
    lite = get_spec("efficientnet_lite0")
    assert lite.timm_id == "tf_efficientnet_lite0" and lite.mean == lite.std == (0.5, 0.5, 0.5)
    assert lite.weights.startswith("package:")


@pytest.mark.parametrize("name", sorted(REQUIRED) + ["mobilenetv3_large_100"])
def test_build_forward_and_freeze(name):
    spec = get_spec(name)
    size = 80 if name == "inception_v3" else 64
    x = torch.randn(2, 3, size, size)
    model = build_model(spec, "binary", pretrained=False).eval()
    assert model(x).shape == (2, 1)
    model7 = build_model(spec, "7class", pretrained=False).eval()
    assert model7(x).shape == (2, 7)
    set_trainable(model, 0)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    names = set_trainable(model, spec.unfreeze_groups)
    groups = parameter_groups(model.backbone)
    n_backbone = sum(1 for _ in model.backbone.parameters())
    assert 0 < len(names) <= n_backbone
    if spec.unfreeze_groups < len(groups):
        assert len(names) < n_backbone  # phase 2 trains the last stages only
        assert set(names) == {n for g in groups[-spec.unfreeze_groups:] for n in g}


def test_simple_cnn_is_about_half_a_million_parameters():
    n = sum(p.numel() for p in build_model(get_spec("simple_cnn"), pretrained=False).parameters())
    assert 300_000 < n < 700_000


def test_any_timm_model_name_passes_through_and_unknown_names_are_named():
    spec = get_spec("resnet18", image_size=96)
    assert spec.timm_id == "resnet18" and spec.image_size == 96 and spec.weights == "timm-hub"
    with pytest.raises(KeyError, match="'no_such_net'"):
        get_spec("no_such_net")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_package_weights_classify_a_cat_photo(name):
    from skimage import data
    from torchvision.transforms.v2 import functional as F
    spec = get_spec(name)
    model = create_backbone(spec, pretrained=True, num_classes=1000).eval()
    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float() / 255
    s = spec.image_size
    x = (F.center_crop(F.resize(img, round(s / spec.crop_pct), antialias=True), [s, s]) - 0.5) / 0.5
    with torch.no_grad():
        top5 = model(x[None]).softmax(1).topk(5).indices[0].tolist()
    assert top5[0] in range(281, 286), top5  # ImageNet's domestic cats: tabby, tiger, Persian, Siamese, Egyptian


def test_offline_hub_failure_names_model_and_remedy():
    with pytest.raises(WeightsUnavailableError, match=r"'resnet50'.*--weights FILE.*--no-pretrained"):
        create_backbone(get_spec("resnet50"), pretrained=True)


def test_weights_file_loads_safetensors_and_rejects_a_mismatch(tmp_path):
    from safetensors.torch import save_file
    spec = get_spec("resnet18")
    source = create_backbone(spec, pretrained=False, num_classes=1000)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    torch.save(source.state_dict(), tmp_path / "r18.pth")
    for f in ("r18.safetensors", "r18.pth"):
        loaded = create_backbone(spec, weights_file=tmp_path / f)
        assert torch.equal(loaded.state_dict()["layer4.1.conv2.weight"], source.state_dict()["layer4.1.conv2.weight"])
    with pytest.raises(WeightsUnavailableError, match="same architecture"):
        create_backbone(get_spec("efficientnet_b0"), weights_file=tmp_path / "r18.safetensors")
    with pytest.raises(WeightsUnavailableError, match="not found"):
        create_backbone(spec, weights_file=tmp_path / "missing.pth")


def test_probabilities_per_task():
    logits7 = torch.randn(5, 7)
    p = torch.softmax(logits7, 1)
    assert torch.allclose(malignant_probability(logits7, "7class"), p[:, 0] + p[:, 1] + p[:, 4])  # akiec, bcc, mel
    logits1 = torch.randn(5, 1)
    assert torch.allclose(malignant_probability(logits1, "binary"), torch.sigmoid(logits1[:, 0]))
    assert torch.allclose(class_probabilities(logits1, "binary").sum(1), torch.ones(5))


def test_each_task_answers_the_same_questions_through_one_interface():
    from skinlesion.models.task import get_task
    logits7, logits1 = torch.randn(6, 7), torch.randn(6, 1)
    for task, logits in (("7class", logits7), ("binary", logits1)):
        t = get_task(task)
        classes = t.class_probabilities(logits)
        assert classes.shape == (6, len(t.class_names)) and torch.allclose(classes.sum(1), torch.ones(6))
        assert torch.allclose(t.p_malignant(classes), malignant_probability(logits, task))
        # an ensemble of one: its logits give back the same class probabilities
        assert torch.allclose(t.class_probabilities(t.logits_from_probabilities(classes, 1e-7)), classes, atol=1e-5)
        assert t.outputs == logits.shape[1] and t.label("mel") in range(len(t.class_names))
    assert list(get_task("7class").malignant(np.array([0, 1, 2, 4, 5]))) == [1, 1, 0, 1, 0]  # akiec, bcc, mel
    with pytest.raises(ValueError, match="unknown task 'x'; expected one of binary, 7class"):
        get_task("x")
