from __future__ import annotations

import random

import onnx
import torch

from hwprune.models import load_model
from hwprune.onnx_export import to_onnx_bytes
from hwprune.pruning import PruningSpace
from hwprune.pruning._cost import CostModel, dense_params_macs


def test_dense_cost_matches_counts():
    lm = load_model("resnet18", input_shape="1x3x64x64")
    space = PruningSpace(lm)
    cost = CostModel(space).cost(space.dense_plan())
    params, macs = dense_params_macs(lm.model, lm.input_shape)
    assert cost.params == params == 11689512
    assert cost.macs == macs


def test_pruned_cost_matches_pruned_model():
    lm = load_model("mobilenet_v2", input_shape="1x3x64x64")
    space = PruningSpace(lm)
    cm = CostModel(space)
    rng = random.Random(0)
    for _ in range(3):
        plan = space.random_plan(rng)
        pruned = space.apply(plan)
        c = cm.cost(plan)
        params, macs = dense_params_macs(pruned, lm.input_shape)
        assert (c.params, c.macs) == (params, macs)
        data = to_onnx_bytes(pruned, lm.input_shape)
        graph = onnx.load_from_string(data).graph
        inits = {i.name: onnx.numpy_helper.to_array(i).nbytes for i in graph.initializer}
        init_bytes = sum(inits[t] for n in graph.node for t in n.input if t in inits)
        assert c.weight_bytes == init_bytes


def test_peak_activation_is_at_least_largest_tensor_pair():
    lm = load_model("demo")
    space = PruningSpace(lm)
    cm = CostModel(space)
    dense = cm.cost(space.dense_plan())
    small = cm.cost(space.smallest_plan())
    # the stem turns a 1x28x28 input into 32x28x28: both are live at once
    assert dense.peak_activation_bytes >= 4 * (28 * 28 + 32 * 28 * 28)
    assert small.peak_activation_bytes < dense.peak_activation_bytes
    assert small.memory_bytes < dense.memory_bytes


def test_cost_of_a_plan_is_fast_and_pure():
    space = PruningSpace(load_model("resnet20"))
    cm = CostModel(space)
    plan = space.uniform_plan(0.4)
    assert cm.cost(plan) == cm.cost(plan)
    assert torch.get_num_threads() >= 1
