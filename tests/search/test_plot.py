"""trials.png shows what the user gets: finalists after fine-tuning and the winner's
fine-tuned accuracy at its predicted and measured latency, not only search scores."""
from __future__ import annotations

from hwprune.search import Budget
from hwprune.search._plot import trials_figure


def test_figure_shows_finalists_and_the_winner_as_measured():
    fig = trials_figure([], Budget(latency_ms=0.25), dense_ms=0.5,
                        finalists=[{"predicted_ms": 0.24, "val_accuracy": 0.91},
                                   {"predicted_ms": 0.22, "val_accuracy": 0.90}],
                        winner={"val_accuracy": 0.91, "predicted_ms": 0.24, "measured_ms": 0.245})
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "finalists after fine-tuning (2)" in labels
    assert "winner: val 0.9100, predicted 0.24 ms" in labels and "winner measured 0.245 ms" in labels
    assert fig.axes[0].get_ylabel() == "validation accuracy"
