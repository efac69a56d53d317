"""Evaluation of the machines (paper Sec. 5): Tables 3 and 4, Figs. 5-7, report; inference on measured data."""

from crnet.evaluate.report import EvalConfig, evaluate

__all__ = ["EvalConfig", "evaluate"]
