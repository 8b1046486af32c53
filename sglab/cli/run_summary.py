"""The one line that ``sglab train`` prints about a finished run, in process or across processes."""

from __future__ import annotations

from typing import Any


def describe(summary: dict[str, Any]) -> str:
    """The one-line result of a run."""
    task, method = summary["task"], summary["method"]
    if summary.get("pipeline"):
        pipeline = summary["pipeline"]
        method = f"{pipeline['method']} ({method} over {pipeline['microbatches']} microbatches)"
    if task == "classify":
        return (f"{method} {summary['model']}-{summary['layers']} on {summary['dataset']}: test error "
                f"{summary['final_test_error']:.4f} after {summary['steps']} steps ({summary['train_time_s']:.1f} s training)")
    if task in ("copy", "repeat-copy"):
        return (f"{task} {method} T={summary['truncation']}: longest length solved {summary['longest_solved']} "
                f"in {summary['steps']} steps")
    if task == "charlm":
        return f"charlm {method} T={summary['truncation']}: validation {summary['valid_bpc']:.3f} bits per character"
    if task == "rnn-chain":
        cut = f", links {summary['cut_links']} cut" if summary["cut_links"] else ""
        return (f"rnn-chain {method} ratios {summary['ratios']}{cut}: last network's test accuracy "
                f"{summary['test_accuracy']:.3f}, loss {summary['test_loss']:.3f} (majority guess {summary['chance']:.3f})")
    return (f"two-rnn {method} N={summary['tick_ratio']}: test accuracy A {summary['test_accuracy_a']:.3f}, "
            f"B {summary['test_accuracy_b']:.3f} (B's majority guess {summary['chance_b']:.3f})")
