"""Scores of a sync detector, in numpy: ROC AUC (the Mann-Whitney statistic) and the equal error rate."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative), ties
    counting one half (the Mann-Whitney statistic from average ranks)."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError("AUC needs positives and negatives")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def equal_error_rate(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """(EER, threshold): accepting score >= threshold, the rate where false acceptance (of negatives)
    equals false rejection (of positives), linearly interpolated between the two thresholds where
    their difference changes sign."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError("EER needs positives and negatives")
    thresholds = np.concatenate([np.unique(s), [np.inf]])  # ascending; inf accepts nothing
    far = np.array([(s[~y] >= t).sum() / neg for t in thresholds])  # falls as t rises
    frr = np.array([(s[y] < t).sum() / pos for t in thresholds])  # rises as t rises
    diff = far - frr
    i = int(np.argmax(diff <= 0))  # first threshold where FRR caught up with FAR (diff[-1] = -1 <= 0)
    if diff[i] == 0 or i == 0:
        return float((far[i] + frr[i]) / 2), float(thresholds[i])
    w = diff[i - 1] / (diff[i - 1] - diff[i])  # between thresholds i-1 (diff > 0) and i (diff < 0)
    eer = far[i - 1] + w * (far[i] - far[i - 1])
    return float(eer), float(thresholds[i - 1] + w * (thresholds[i] - thresholds[i - 1])
                             if np.isfinite(thresholds[i]) else thresholds[i - 1])
