"""Linear SVM on frozen features (the CrossPoint / SeRP / MM-Point protocol).

Features are standardized with the training set's mean and std, a linear SVM (libsvm's
``SVC(kernel="linear")``, one-vs-one, as CrossPoint's evaluation) is fit for each C of a grid, and
C is chosen on data that is never the test set (ties: the smaller C, the stronger regularization):

* on validation data, when it holds at least ``max(10, 2 x classes)`` samples (``classes``: the
  training set's): the dataset's own val split, or for a dataset without one (ModelNet40,
  ScanObjectNN) a stratified 20 % hold-out of the training set;
* otherwise (a val split of 3 objects scores every C at 0, 1/3, 2/3 or 1, and picks C by chance) by
  stratified k-fold cross-validation on the training set, k = 5, or the size of the smallest
  training class when that is smaller (at least 2): the C with the best mean fold accuracy. With
  ``groups`` (the benchmark's views of one object) a group stays within one fold, and a training set
  without a val split is cross-validated rather than split by a hold-out.

Then the SVM is refit with that C on the whole training set and scored once on the test set.
``val_source`` in the result says which rule applied, e.g. ``"5-fold CV on train (val split has
only 3 samples, fewer than 16)"``.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import TrainError

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def _fit(x: np.ndarray, y: np.ndarray, C: float, seed: int):
    """Linear-kernel libsvm: exact and, for a few thousand samples, much faster than liblinear's
    dual solver on dense high-dimensional features (0.2 s against 8-20 s per fit measured on
    1224 x 2048 PointNet features)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import SVC

    clf = SVC(C=C, kernel="linear", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    return [(a - mean) / std for a in (train, *others)]


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, holdout) index arrays; each class keeps at least one sample on the fit side."""
    rng = np.random.default_rng(seed)
    fit, hold = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = min(len(idx) - 1, int(round(fraction * len(idx))))
        hold.extend(idx[:k])
        fit.extend(idx[k:])
    return np.sort(np.array(fit, dtype=np.int64)), np.sort(np.array(hold, dtype=np.int64))


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(pred) == np.asarray(labels)).mean()) if len(labels) else float("nan")


def min_val_size(classes: int) -> int:
    """Validation samples needed to choose C on them (fewer: cross-validation on train)."""
    return max(10, 2 * classes)


def cv_folds(labels: np.ndarray, folds: int = 5, groups: np.ndarray | None = None) -> int:
    """k of the stratified k-fold cross-validation: ``folds``, or the size of the smallest class (in
    ``groups``, when given) when that is smaller, at least 2; 0 when no class has 2 (no cross-validation)."""
    if groups is None:
        counts = np.unique(labels, return_counts=True)[1]
    else:
        counts = np.array([len(np.unique(np.asarray(groups)[labels == c])) for c in np.unique(labels)])
    if counts.max() < 2:
        return 0
    return int(max(2, min(folds, counts.min())))


def cv_scores(x: np.ndarray, y: np.ndarray, c_grid, folds: int, seed: int,
              groups: np.ndarray | None = None) -> dict[float, float]:
    """Mean accuracy over the folds of a stratified ``folds``-fold split of (x, y), per C; each fold's
    features are standardized with the statistics of its training part. ``groups`` (e.g. the object of
    each view) keeps each group within one fold."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    with warnings.catch_warnings():  # a class smaller than k: sklearn warns, and leaves it out of some folds
        warnings.simplefilter("ignore", UserWarning)
        if groups is None:
            splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y))
        else:
            splits = list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups))
    scores = {float(C): [] for C in c_grid}
    for fit, hold in splits:
        if len(np.unique(y[fit])) < 2:
            continue
        fx, hx = standardize(x[fit], x[hold])
        for C in scores:
            scores[C].append(accuracy(_fit(fx, y[fit], C, seed).predict(hx), y[hold]))
    return {C: float(np.mean(v)) if v else float("nan") for C, v in scores.items()}


def linear_svm(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
               val_x: np.ndarray | None = None, val_y: np.ndarray | None = None, c_grid=C_GRID,
               val_fraction: float = 0.2, seed: int = 0, predictions: bool = False, folds: int = 5,
               groups: np.ndarray | None = None) -> dict:
    """Test accuracy of a linear SVM with C chosen as the module docstring says: on the val split
    (``val_x``, ``val_y``) or a ``val_fraction`` hold-out of train when there are enough samples, else by
    stratified ``folds``-fold cross-validation on train (``groups``: training samples that must share a
    fold, e.g. views of one object). ``val_source`` says which.
    ``predictions``: also return the predicted test labels (``"predictions"``, an array)."""
    if len(np.unique(train_y)) < 2:
        raise TrainError("linear SVM needs at least 2 classes in the training set")
    need = min_val_size(len(np.unique(train_y)))
    has_val = val_x is not None and val_y is not None and len(val_y) > 0
    if has_val:
        fx, fy, vx, vy, val_source = train_x, train_y, val_x, val_y, "val split"
    else:
        fit, hold = stratified_holdout(train_y, val_fraction, seed)
        fx, fy, vx, vy, val_source = train_x[fit], train_y[fit], train_x[hold], train_y[hold], "train hold-out"
    k = cv_folds(train_y, folds, groups)
    extra = {}
    grouped_holdout = not has_val and groups is not None  # a plain hold-out would split groups: CV instead
    if (len(vy) < need or grouped_holdout) and k:
        if has_val:
            why = f"val split has only {len(vy)} samples, fewer than {need}"
        elif grouped_holdout:
            why = "no val split"
        else:
            why = (f"a {round(100 * val_fraction)} % hold-out of train would have only {len(vy)} samples, fewer "
                   f"than {need}")
        val_source = f"{k}-fold CV on train ({why})"
        scores = cv_scores(train_x, train_y, c_grid, k, seed, groups)
        vy, extra = train_y, {"cv_folds": k}
    elif len(vy) == 0:  # one sample per class and no val split: nothing to choose C on
        mid = float(c_grid[len(c_grid) // 2])
        scores, val_source = {mid: float("nan")}, "none: C fixed (one training sample per class, no val split)"
    else:
        fx_s, vx_s = standardize(fx, vx)
        scores = {float(C): accuracy(_fit(fx_s, fy, C, seed).predict(vx_s), vy) for C in c_grid}
    best = max(scores, key=lambda c: (np.nan_to_num(scores[c], nan=-1.0), -c))  # ties: the smaller C
    tx_s, te_s = standardize(train_x, test_x)
    clf = _fit(tx_s, train_y, best, seed)
    pred = clf.predict(te_s)
    out = {"protocol": "svm", "test_accuracy": accuracy(pred, test_y), "C": best,
           "val_accuracy": scores[best], "val_scores": scores, "val_source": val_source, **extra,
           "train_size": int(len(train_y)), "val_size": int(len(vy)), "test_size": int(len(test_y)),
           "feature_dim": int(train_x.shape[1])}
    if predictions:
        out["predictions"] = np.asarray(pred)
    return out


def c_choice(result: dict) -> str:
    """How C was chosen, for a summary line: "chosen on the val split (40 samples)", "chosen by 5-fold CV
    on train (val split has only 3 samples, fewer than 10)", ..."""
    src = result["val_source"]
    if src == "val split":
        return f"chosen on the val split ({result['val_size']} samples)"
    if src == "train hold-out":
        return f"chosen on a hold-out of train ({result['val_size']} samples)"
    if "CV on train" in src:
        return f"chosen by {src}"
    return src.split(": ", 1)[-1]
