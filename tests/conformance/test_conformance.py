"""Architectures as people write them (tests/conformance/models.py), through the user
model path: prune at three ratios, export, match onnxruntime against torch, count
parameters analytically, extract the kernels onnxruntime runs."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from hwprune.errors import ConfigError
from hwprune.models import load_model
from hwprune.onnx_export import check_onnx, to_onnx_bytes
from hwprune.pruning import analyze
from hwprune.runtimes.ort import extract_kernels
from tests.conformance.models import SHAPES

MODELS_FILE = Path(__file__).with_name("models.py")
RATIOS = (0.25, 0.5, 0.75)
CONFORMING = [n for n in SHAPES if n != "channel_mean_gate"]


def _load(name: str):
    return load_model(f"{MODELS_FILE}:{name}", input_shape=SHAPES[name])


@pytest.fixture(scope="module", params=CONFORMING)
def analysis(request):
    return analyze(_load(request.param))


def test_prune_export_count_extract(analysis):
    lm, space, cost = analysis.lm, analysis.space, analysis.cost
    dense = cost.cost(space.dense_plan())
    assert dense.params == sum(p.numel() for p in lm.model.parameters())
    templates = analysis.templates
    assert templates and len(templates) == len(extract_kernels(cost.onnx_models[0]))
    seen = set()
    for ratio in RATIOS:
        plan = space.uniform_plan(ratio)
        pruned = space.apply(plan)
        x = lm.example_input(1)
        with torch.no_grad():
            y, y_dense = pruned(x), lm.model(x)
        assert y.shape == y_dense.shape
        params = sum(p.numel() for p in pruned.parameters())
        assert cost.cost(plan).params == params, (ratio, cost.cost(plan).params, params)
        seen.add(params)
        data = to_onnx_bytes(pruned, lm.input_shape)
        assert check_onnx(pruned, data, lm.input_shape, seed=2) <= 1e-4
        # the kernels of the pruned model are the templates evaluated at the plan
        full = space.full_keep(plan)
        keep = [full[g.name] for g in space.groups]
        assert [k.sig for k in extract_kernels(data)] == [t.sig(keep) for t in templates]
    assert len(seen) == len(RATIOS)  # every ratio really pruned something different
    assert max(seen) < dense.params


def test_input_shape_from_model_attribute():
    lm = load_model(f"{MODELS_FILE}:input_attr")
    assert lm.input_shape == (1, 3, 32, 32)


@pytest.mark.parametrize("name,expect", [
    ("inception", {"concat"}), ("densenet", {"concat", "bn"}), ("unet", {"concat", "deconv", "resize_linear"}),
    ("ghostnet", {"concat"}), ("shufflenet_v2", {"split", "transpose", "concat"}),
    ("mobilenetv3_small", {"scale"}), ("efficientnet_mbconv", {"scale", "reducemean"}),
    ("shared_twice", {"resize_nearest"}), ("input_attr", {"bn", "pad_reflect"}),
])
def test_operators_become_kernels(name, expect):
    lm = _load(name)
    ops = {k.sig.op for k in extract_kernels(to_onnx_bytes(lm.model, lm.input_shape))}
    assert expect <= ops


def test_concatenation_sizes_are_sums_of_segments():
    a = analyze(_load("densenet"))
    # the transition conv reads the stem and all three growth segments
    t = next(t for t in a.templates if t.name.startswith("/trans/"))
    assert len(t.groups_used) == 4
    names = {a.space.groups[g].name for g in t.groups_used}
    assert names == {"stem", "block.0.conv", "block.1.conv", "block.2.conv"}


def test_grouped_convs_prune_whole_groups():
    a = analyze(_load("regnet"))
    g = a.space.by_name["s1.0.b.0"]
    assert g.step == 8 and all(c % 8 == 0 for c in g.choices)
    pruned = a.space.apply(a.space.uniform_plan(0.5))
    conv = pruned.s1[0].b[0]
    assert conv.out_channels // conv.groups == 8 and conv.groups == conv.out_channels // 8 < 4


def test_se_excitation_follows_the_gated_tensor():
    a = analyze(_load("mobilenetv3_small"))
    g = a.space.by_name["blocks.3.se.fc2"]
    assert {"blocks.3.dw.0:out", "blocks.3.se.fc2:out", "blocks.3.project.0:in"} <= set(g.members)


def test_concatenation_spanned_by_a_gate_or_add_prunes_each_branch():
    a = analyze(_load("gated_inception"))
    assert a.space.segments, "the group spanning the concatenation was not split"
    rng = random.Random(5)
    plans = [a.space.uniform_plan(0.9)] + [a.space.random_plan(rng, 0.0, 0.9) for _ in range(6)]
    for plan in plans:
        pruned = a.space.apply(plan)
        full = a.space.full_keep(plan)
        for root, segments in a.space.segments.items():
            for seg, _ in segments:
                assert full[seg] >= 1
        convs = [m for m in pruned.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(m.out_channels >= 1 and m.in_channels >= 1 for m in convs)
        assert a.cost.cost(plan).params == sum(p.numel() for p in pruned.parameters())
        assert check_onnx(pruned, to_onnx_bytes(pruned, a.lm.input_shape), a.lm.input_shape, seed=3) <= 1e-4


def test_gated_concatenation_segments_are_named_by_their_branch():
    a = analyze(_load("gated_inception"))
    names = {g.name for g in a.space.groups}
    # the residual add meets a 16+16 concatenation with a 12+20 one: three segments
    assert {"a2.0", "a1.0@12", "b1.1.0"} <= names
    assert [a.space.by_name[n].size for n in ("a2.0", "a1.0@12", "b1.1.0")] == [12, 4, 16]
    pruned = a.space.apply(a.space.uniform_plan(0.5))
    assert pruned.a2[0].out_channels == 6 and pruned.a1[0].out_channels == 6 + 2
    assert pruned.b1[1][0].out_channels == 8 and pruned.b2[1][0].out_channels == 2 + 8
    assert pruned.se2.fc1.in_channels == 16


def test_shuffle_keeps_shuffled_channels_whole():
    a = analyze(_load("shufflenet_v2"))
    assert a.space.auto_pinned and all("cannot follow" in r for r in a.space.auto_pinned.values())
    assert any(g.name.endswith("branch2.3") for g in a.space.groups)


def test_ghost_residual_channels_prune_in_tied_pairs():
    a = analyze(_load("ghostnet"))
    assert not a.space.auto_pinned
    # the stem's 16 channels meet ghost2's cat([primary, depthwise(primary)]) in a residual
    # add: channel i and i + 8 are the same primary channel and go together
    assert a.space.ties["blocks.1.shortcut.0"] == [[i, i + 8] for i in range(8)]
    assert a.space.by_name["blocks.1.shortcut.0"].step == 2
    pruned = a.space.apply(a.space.uniform_plan(0.5))
    assert pruned.stem[0].out_channels == 8 and pruned.blocks[0].ghost2.primary[0].out_channels == 4


def test_pinned_layers_are_not_pruned():
    lm = _load("vgg_mlp")
    a = analyze(lm, keep_layers=["features.3", "classifier.1"])
    names = {g.name for g in a.space.groups}
    assert "features.3.0" not in names and "classifier.1" not in names
    plan = a.space.uniform_plan(0.5)
    assert plan.meta["keep_layers"] == ["features.3", "classifier.1"]
    pruned = a.space.apply(plan)
    assert pruned.features[3][0].out_channels == 32 and pruned.classifier[1].out_features == 64
    assert pruned.features[0][0].out_channels < 16
    with pytest.raises(ConfigError, match="names no layer.*feature.9"):
        analyze(lm, keep_layers=["feature.9"])


def test_unsafe_model_gets_one_line_naming_the_layer():
    with pytest.raises(ConfigError) as err:
        analyze(_load("channel_mean_gate"))
    text = str(err.value)
    assert "\n" not in text and "safely" in text and "'c" in text and "--keep-layers" in text
