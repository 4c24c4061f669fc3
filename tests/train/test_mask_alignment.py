"""CrossAlignNet mask alignment on real rendered shards: point patch centers projected with the
stored (normalized) cameras land in image patches whose mask follows the strategy."""

from __future__ import annotations

import pytest
import torch

from pcssl_train.data import CmaDataset
from pcssl_train.methods.mask_alignment import align_masks, image_patch_index
from pcssl_train.methods.point_mae import random_patch_mask
from pcssl_train.ops import gather_points, group_patches, project

PATCH = 16  # 64 px renders -> 4 x 4 image patches


@pytest.fixture(scope="module")
def batch(rendered):
    ds = CmaDataset(rendered, kind="view", split="all", num_points=256, view_choice="most_points", seed=3)
    items = [ds[i] for i in range(len(ds))]
    return {k: torch.stack([it[k] for it in items]) for k in ("points", "pixels", "K", "world_to_cam", "rgb")}


def test_projected_centers_hit_their_stored_pixels(batch):
    patches = group_patches(batch["points"], 16, 16)
    center_idx = patches.idx[:, :, 0]                                 # a center is its own nearest point
    pix = project(patches.center, batch["K"], batch["world_to_cam"])[0]
    stored = gather_points(batch["pixels"].float(), center_idx)
    assert (pix - stored).abs().max() < 1e-3
    h, w = batch["rgb"].shape[-2:]
    index = image_patch_index(pix, h, w, PATCH)
    expected = (stored[..., 0].long() // PATCH) * (w // PATCH) + stored[..., 1].long() // PATCH
    assert torch.equal(index, expected)


@pytest.mark.parametrize("strategy", ["correspondence", "complementary", "random"])
def test_alignment(strategy, batch):
    torch.manual_seed(0)
    patches = group_patches(batch["points"], 16, 16)
    h, w = batch["rgb"].shape[-2:]
    index = image_patch_index(project(patches.center, batch["K"], batch["world_to_cam"])[0], h, w, PATCH)
    first = random_patch_mask(*index.shape, 0.6, index.device)
    point_mask, image_mask = align_masks(first, index, (h // PATCH) * (w // PATCH), strategy)
    assert (point_mask | ~first).all()                                 # alignment only adds masked patches
    lands_masked = torch.gather(image_mask, 1, index)
    if strategy == "correspondence":
        assert torch.equal(lands_masked, point_mask)                   # masked -> masked, visible -> visible
    elif strategy == "complementary":
        assert torch.equal(lands_masked, ~point_mask)                  # masked -> visible, visible -> masked
    else:
        assert torch.equal(point_mask, first)
        assert (image_mask.sum(1) == int(0.6 * 16)).all()
    assert point_mask.shape == (len(index), 16) and image_mask.shape == (len(index), 16)


def test_shared_image_patch_masks_both_point_patches():
    index = torch.tensor([[0, 0, 1, 2]])
    mask = torch.tensor([[True, False, False, True]])
    for strategy, image in (("correspondence", [True, False, True, False]),
                            ("complementary", [False, True, False, False])):
        point_mask, image_mask = align_masks(mask, index, 4, strategy)
        assert point_mask.tolist() == [[True, True, False, True]]
        assert image_mask.tolist() == [image]
    with pytest.raises(ValueError, match="strategy"):
        align_masks(mask, index, 4, "other")
