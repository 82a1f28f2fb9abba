"""Softmax + cross-entropy, fused: the gradient of the pair is simply ``softmax - onehot``."""
from __future__ import annotations

import numpy as np

from .module import checked_array


class SoftmaxCrossEntropy:
    """Mean cross-entropy of ``softmax(logits)`` against integer class labels.

    ``forward(logits, labels)`` returns the loss (a float); ``backward()`` returns d loss / d logits,
    shaped and typed like ``logits``, which must be float32 or float64 (a TypeError otherwise:
    nothing is converted silently).  Matches ``torch.nn.functional.cross_entropy`` (mean
    reduction), including a batch of zero samples: the loss is NaN (a mean over nothing) and the
    gradient empty.
    """

    def forward(self, logits, labels):
        logits = checked_array(logits, "SoftmaxCrossEntropy", what="logits")
        labels = np.asarray(labels)
        if logits.ndim != 2:
            raise ValueError(f"logits must be (N, classes), got shape {logits.shape}")
        if labels.shape != (logits.shape[0],):
            raise ValueError(f"labels must be ({logits.shape[0]},) to match logits {logits.shape}, got {labels.shape}")
        if labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise ValueError(f"labels must lie in 0..{logits.shape[1] - 1}, got {labels.min()}..{labels.max()}")
        self._labels = labels
        if labels.shape[0] == 0:
            self._probs = np.empty_like(logits)
            return float("nan")
        # Subtracting the row maximum keeps exp() from overflowing; it cancels in the softmax.
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_probs = shifted - log_norm
        self._probs = np.exp(log_probs)
        rows = np.arange(labels.shape[0])
        return float(-log_probs[rows, labels].mean())

    __call__ = forward

    def backward(self, grad_loss=1.0):
        if self._labels.shape[0] == 0:
            return self._probs.copy()  # (0, classes)
        grad = self._probs.copy()
        grad[np.arange(self._labels.shape[0]), self._labels] -= 1
        grad *= grad.dtype.type(grad_loss / self._labels.shape[0])
        return grad
