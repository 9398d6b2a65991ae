"""Identity linkage without pixels: which candidate person do the transmitted features of a face belong to?

The attacker pushes photos of candidate people through the client (as the device would, noise
included) and links each observed feature vector to the candidate whose photos' features are
closest (cosine after removing the candidates' mean feature, best photo per candidate). No image
is rebuilt: a deep split that defeats every inversion can still give its users away by linkage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def link_features(observed: Tensor, candidates: Tensor, candidate_labels: Tensor) -> Tensor:
    """For each observed feature row, the label of the candidate person whose feature rows are closest (best photo)."""
    if not len(candidates):
        raise ValueError("linkage needs feature rows of at least one candidate photo")
    c = candidates.flatten(1).float()
    mean = c.mean(0, keepdim=True)
    sims = F.normalize(observed.flatten(1).float() - mean, dim=1) @ F.normalize(c - mean, dim=1).T  # N x M
    labels = candidate_labels.long()
    people = torch.unique(labels)
    per_person = torch.stack([sims[:, labels == p].amax(1) for p in people], 1)  # N x P
    return people[per_person.argmax(1)]
