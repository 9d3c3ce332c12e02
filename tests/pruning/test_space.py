from __future__ import annotations

import json
import random

import pytest
import torch

from hwprune.errors import ConfigError, PlanError
from hwprune.models import ZOO, load_model
from hwprune.onnx_export import check_onnx, to_onnx_bytes
from hwprune.pruning import PruningPlan, PruningSpace
from hwprune.pruning._cost import CostModel

# ImageNet-layout models run at 64x64 here (they accept any size); full size is a slow test.
SMALL = {"resnet18": "1x3x64x64", "resnet34": "1x3x64x64", "resnet50": "1x3x64x64",
         "mobilenet_v1": "1x3x64x64", "mobilenet_v2": "1x3x64x64"}


def _check_random_plans(name: str, shape: str | None, n: int) -> None:
    lm = load_model(name, input_shape=shape)
    space = PruningSpace(lm)
    cost = CostModel(space)
    rng = random.Random(1234)
    for i in range(n):
        plan = space.random_plan(rng, 0.0, 0.8)
        pruned = space.apply(plan)
        x = lm.example_input(i)
        with torch.no_grad():
            y = pruned(x)
            other = pruned(lm.example_input(i + 100))
        assert y.shape == lm.model(x).shape
        # the comparison below means something only if the output depends on the input
        assert (y - other).abs().max() > 1e-4 * y.abs().max()
        rel = check_onnx(pruned, to_onnx_bytes(pruned, lm.input_shape), lm.input_shape, seed=i)
        assert rel <= 1e-4, (name, i, rel)
        assert cost.cost(plan).params == sum(p.numel() for p in pruned.parameters())


@pytest.mark.parametrize("name", list(ZOO))
def test_twenty_random_plans_run_export_and_count(name):
    _check_random_plans(name, SMALL.get(name), 20)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SMALL))
def test_twenty_random_plans_full_resolution(name):
    _check_random_plans(name, None, 20)


def test_plan_json_roundtrip_is_bit_identical(tmp_path):
    lm = load_model("resnet20")
    space = PruningSpace(lm)
    plan = space.random_plan(random.Random(7))
    a = space.apply(plan)
    plan.save(tmp_path / "plan.json")
    fresh = load_model("resnet20", pretrained=False)
    fresh.model.load_state_dict(lm.model.state_dict())
    b = PruningSpace(fresh).apply(PruningPlan.load(tmp_path / "plan.json"))
    x = lm.example_input(3)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["model_id"] == "resnet20" and doc["input_shape"] == [1, 3, 32, 32]
    assert "hwprune_version" in doc and set(doc["groups"]) == {g.name for g in space.groups}


def test_kept_channels_are_largest_l1():
    lm = load_model("demo")
    space = PruningSpace(lm)
    g = space.by_name["head.0"]
    keep = g.choices[len(g.choices) // 2]
    plan = space._plan({"head.0": keep})
    pruned = space.apply(plan)
    w = lm.model.head[0].weight.detach()
    imp = w.abs().flatten(1).mean(1)  # the conv part of the group score ranks the same way here
    assert pruned.head[0].weight.shape[0] == keep
    kept_rows = {tuple(r.flatten()[:4].tolist()) for r in pruned.head[0].weight.detach()}
    top = torch.argsort(imp, descending=True)[: keep // 2]
    assert sum(tuple(w[i].flatten()[:4].tolist()) in kept_rows for i in top) >= len(top) * 0.9


def test_residual_groups_couple_both_branches():
    space = PruningSpace(load_model("resnet18", input_shape="1x3x64x64"))
    # the stage-1 group ties the stem conv to both residual branches of layer1
    stem = next(g for g in space.groups if "conv1:out" in g.members)
    assert {"layer1.0.conv2:out", "layer1.1.conv2:out"} <= set(stem.members)


def test_residual_models_never_shape_error_at_extremes():
    for name in ("resnet50", "mobilenet_v2", "resnet56"):
        lm = load_model(name, input_shape=SMALL.get(name))
        space = PruningSpace(lm)
        for plan in (space.smallest_plan(), space.uniform_plan(0.5), space.dense_plan()):
            with torch.no_grad():
                space.apply(plan)(lm.example_input())


def test_channel_choices_rounded_and_floored():
    space = PruningSpace(load_model("resnet18", input_shape="1x3x64x64"))
    for g in space.groups:
        assert g.choices[-1] == g.size
        assert all(c % 8 == 0 for c in g.choices)
        assert g.floor >= max(8, g.size // 10)


def test_bad_ratio_and_foreign_plans():
    space = PruningSpace(load_model("resnet20"))
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="ratio"):
            space.uniform_plan(bad)
    other = PruningSpace(load_model("resnet56")).uniform_plan(0.3)
    with pytest.raises(PlanError, match="resnet56"):
        space.validate(other)
    plan = space.uniform_plan(0.3)
    plan.keep["no.such.layer"] = 3
    with pytest.raises(PlanError, match="no.such.layer"):
        space.validate(plan)
    plan = space.uniform_plan(0.3)
    plan.keep[space.groups[0].name] = 10_000
    with pytest.raises(PlanError, match="keeps 10000"):
        space.apply(plan)


def test_plan_file_errors(tmp_path):
    with pytest.raises(PlanError, match="does not exist"):
        PruningPlan.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        PruningPlan.load(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text('{"schema_version": 1}')
    with pytest.raises(PlanError, match="not a valid pruning plan"):
        PruningPlan.load(tmp_path / "wrong.json")
