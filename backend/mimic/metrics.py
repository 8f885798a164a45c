"""Evaluation metrics, pure numpy: lip sync, upper-face dynamics and the style/content split.

Lip and face metrics follow the public evaluation script of CodeTalker (Xing et al., CVPR 2023,
`main/cal_metric.py` of github.com/Doubiiu/CodeTalker), which later papers, Mimic included, use:

- LVE, lip vertex error (MeshTalk's definition, as FaceFormer and CodeTalker compute it): per
  frame, the largest squared L2 distance between predicted and true position over the lip
  vertices; then the mean over all frames of all sequences pooled (so a long sequence weighs
  more than a short one). The prediction is cut to the ground truth's length.
- FDD, upper-face dynamics deviation: per sequence, dyn(M) = mean over upper-face vertices v of
  the standard deviation over time (population, ddof 0) of |M_t,v|^2, the *squared* L2 norm of
  the motion (vertices minus the subject's template) -- CodeTalker's code squares it, though its
  paper writes the norm; FDD = dyn(ground truth) - dyn(prediction), signed (positive: the
  prediction moves the upper face less than the person did), then the mean over sequences.

Shapes: T frames, V vertices, N samples, C code width.
"""

from __future__ import annotations

import numpy as np


def lip_errors(pred: np.ndarray, gt: np.ndarray, lips: np.ndarray) -> np.ndarray:
    """(T, V, 3) prediction and ground truth -> (T,) max over lip vertices of the squared L2 error."""
    _check_pair(pred, gt)
    diff = pred[:, lips].astype(np.float64) - gt[:, lips]  # (T, L, 3)
    return np.einsum("tlc,tlc->tl", diff, diff).max(axis=1)


def lve(pred: np.ndarray, gt: np.ndarray, lips: np.ndarray) -> float:
    """Lip vertex error of one sequence: mean over frames of `lip_errors`."""
    return float(lip_errors(pred, gt, lips).mean())


def upper_face_dynamics(motion: np.ndarray, upper: np.ndarray) -> float:
    """(T, V, 3) motion -> mean over upper-face vertices of std over time of the squared norm."""
    if motion.ndim != 3 or motion.shape[-1] != 3 or len(motion) == 0:
        raise ValueError(f"motion must be (frames, vertices, 3) with frames > 0, not {motion.shape}")
    m = motion[:, upper].astype(np.float64)  # (T, U, 3)
    return float(np.einsum("tuc,tuc->tu", m, m).std(axis=0).mean())


def fdd(pred_motion: np.ndarray, gt_motion: np.ndarray, upper: np.ndarray) -> float:
    """Upper-face dynamics deviation of one sequence: dyn(ground truth) - dyn(prediction), signed."""
    _check_pair(pred_motion, gt_motion)
    return upper_face_dynamics(gt_motion, upper) - upper_face_dynamics(pred_motion, upper)


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must both be (frames, vertices, 3)")


# ------------------------------------------------------------------------------ style codes


def nearest_mean_accuracy(codes: np.ndarray, labels) -> tuple[float, int]:
    """Identify each sample's class from its code, leave-one-out: the class whose mean code of its
    *other* samples is nearest in cosine distance wins. Works for classes never trained on.
    codes (N, C), labels (N,). Returns (accuracy, number of samples scored); a sample counts
    only if its own class has another sample. (nan, 0) when none does."""
    codes = _unit(np.asarray(codes, dtype=np.float64))
    labels = np.asarray(labels)
    classes, y = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(classes), codes.shape[1]))
    np.add.at(sums, y, codes)
    counts = np.bincount(y, minlength=len(classes)).astype(np.float64)
    correct = scored = 0
    for i in range(len(codes)):
        if counts[y[i]] < 2:
            continue
        s, n = sums.copy(), counts.copy()
        s[y[i]] -= codes[i]
        n[y[i]] -= 1
        valid = n > 0
        means = _unit(s[valid] / n[valid, None])
        candidates = np.flatnonzero(valid)
        correct += int(candidates[np.argmax(means @ codes[i])] == y[i])
        scored += 1
    return (correct / scored if scored else float("nan")), scored


def split_per_class(labels, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test sample indices: each class with two or more samples gives half of them
    (at least one) to the test side, chosen at random with `seed`; classes with one are left out."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < 2:
            continue
        k = max(1, len(idx) // 2)
        test.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(test, dtype=np.int64))


def probe_accuracy(features: np.ndarray, labels, seed: int = 0, l2: float = 1e-2, steps: int = 500) -> dict:
    """How well a linear probe (multinomial logistic regression) reads the class from features.

    Samples are split per class (`split_per_class`); the probe is fitted on the train half with
    standardised features and L2 penalty `l2`, by full-batch gradient descent, and scored on the
    other half. Returns accuracy, chance (1 / number of classes) and the two counts; accuracy is
    nan when fewer than two classes have two samples."""
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    train, test = split_per_class(labels, seed)
    classes, y = np.unique(labels[train], return_inverse=True) if len(train) else (np.array([]), None)
    result = {"accuracy": float("nan"), "chance": 1 / len(classes) if len(classes) else float("nan"),
              "classes": len(classes), "train": len(train), "test": len(test)}
    if len(classes) < 2:
        return result
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8
    xt, xs = (x[train] - mean) / std, (x[test] - mean) / std
    w, b = fit_softmax(xt, y, len(classes), l2, steps)
    predicted = classes[np.argmax(xs @ w + b, axis=1)]
    result["accuracy"] = float(np.mean(predicted == labels[test]))
    return result


def fit_softmax(x: np.ndarray, y: np.ndarray, k: int, l2: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: x (N, C), y (N,) in [0, k) -> weights (C, k), bias (k,).
    Gradient descent with a step of 1 / Lipschitz bound of the loss, so it always descends."""
    n, c = x.shape
    onehot = np.eye(k)[y]
    w, b = np.zeros((c, k)), np.zeros(k)
    lr = 1.0 / (0.5 * (np.linalg.norm(x, 2) ** 2 / n + 1) + l2)  # the softmax Hessian is at most 1/2
    for _ in range(steps):
        logits = x @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / n
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum(axis=0)
    return w, b


def pca_2d(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) -> the codes on their first two principal axes (N, 2), and the fraction of the
    variance each axis explains (2,). Fewer than two axes of variance give zero columns."""
    x = np.asarray(codes, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    out = np.zeros((len(x), 2))
    k = min(2, len(s))
    out[:, :k] = x @ vt[:k].T
    total = float((s ** 2).sum())
    explained = np.zeros(2)
    if total > 0:
        explained[:k] = s[:k] ** 2 / total
    return out, explained


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
