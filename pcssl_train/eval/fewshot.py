"""Few-shot N-way K-shot classification on frozen features (the CrossPoint protocol).

A trial draws N classes, K support samples per class from the training set and up to ``queries``
query samples per class from the test set, fits a linear SVM (standardized features, fixed C) on
the support set and scores the queries. Reported: mean and std of the accuracy over the trials.
The draws depend only on ``seed``, so every encoder sees the same episodes.
"""

from __future__ import annotations

import numpy as np

from ..errors import TrainError
from .svm import _fit, accuracy, standardize

SETTINGS = ((5, 10), (5, 20), (10, 10), (10, 20))  # (ways, shots)


def episodes(train_y: np.ndarray, test_y: np.ndarray, ways: int, shots: int, trials: int, queries: int,
             seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(support indices into train, query indices into test) per trial."""
    ok = [c for c in np.unique(train_y) if (train_y == c).sum() >= shots and (test_y == c).sum() >= 1]
    if len(ok) < ways:
        raise TrainError(f"{ways}-way {shots}-shot needs {ways} classes with at least {shots} training samples "
                         f"and a test sample; this data has {len(ok)}")
    rng = np.random.default_rng([seed, ways, shots])
    out = []
    for _ in range(trials):
        classes = rng.choice(ok, ways, replace=False)
        sup = [rng.choice(np.flatnonzero(train_y == c), shots, replace=False) for c in classes]
        qry = []
        for c in classes:
            pool = np.flatnonzero(test_y == c)
            qry.append(rng.choice(pool, min(queries, len(pool)), replace=False))
        out.append((np.concatenate(sup), np.concatenate(qry)))
    return out


def support_query_accuracy(support_x: np.ndarray, support_y: np.ndarray, query_x: np.ndarray, query_y: np.ndarray,
                           C: float = 0.1, seed: int = 0) -> float:
    """One episode: the SVM fit on the standardized support features, its accuracy on the queries."""
    sx, qx = standardize(support_x, query_x)
    return accuracy(_fit(sx, support_y, C, seed).predict(qx), query_y)


def few_shot(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, ways: int = 5,
             shots: int = 10, trials: int = 10, queries: int = 20, C: float = 0.1, seed: int = 0) -> dict:
    accs, min_q = [], None
    for sup, qry in episodes(train_y, test_y, ways, shots, trials, queries, seed):
        accs.append(support_query_accuracy(train_x[sup], train_y[sup], test_x[qry], test_y[qry], C, seed))
        per_class = np.unique(test_y[qry], return_counts=True)[1].min()
        min_q = per_class if min_q is None else min(min_q, per_class)
    accs = np.array(accs)
    return {"protocol": "fewshot", "ways": ways, "shots": shots, "trials": trials, "queries": queries,
            "min_queries_per_class": int(min_q), "C": C, "mean": float(accs.mean()),
            "std": float(accs.std()), "accuracies": [float(a) for a in accs]}
