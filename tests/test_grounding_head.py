"""The grounding head's object features: the sides the prompts name are steps the head can read, and a head
trained before them loads unchanged."""

import torch

from perception.models.heads.grounding import N_GEOM, N_SIDES, GroundingHead, box_features


def _boxes(xy):
    b = torch.zeros(len(xy), 9)
    b[:, :2] = torch.tensor(xy, dtype=torch.float32)
    b[:, 3:6] = torch.tensor([4.0, 1.8, 1.5])
    return b


def test_side_steps_follow_the_prompts_geometry():
    """ahead / behind flips at x = 0, left beyond y = 2 m, right beyond y = -2 m (language.prompts' words); the
    linear position features alone change by 0.02 across those lines."""
    f = box_features(_boxes([[1.5, 0.0], [-1.5, 0.0], [0.0, 3.0], [0.0, 1.0], [0.0, -3.0], [0.0, -1.0]]),
                     torch.zeros(6, dtype=torch.long), torch.full((6,), -1))
    assert f.shape == (6, N_GEOM)
    ahead, left, right = f[:, -3], f[:, -2], -f[:, -1]
    assert ahead[0] > 0.9 and ahead[1] < -0.9
    assert left[2] > 0.9 and left[3] < -0.9 and left[4] < -0.9
    assert right[4] > 0.9 and right[5] < -0.9 and right[2] < -0.9


def test_a_head_trained_before_the_side_steps_loads_and_computes_what_it_did():
    torch.manual_seed(0)
    new = GroundingHead(bev_channels=8, xy_range=(-51.2, -51.2, 51.2, 51.2)).eval()
    old_state = {k: v.clone() for k, v in new.state_dict().items()}
    old_state["obj.0.weight"] = old_state["obj.0.weight"][:, :-N_SIDES]  # the shape a head had before
    head = GroundingHead(bev_channels=8, xy_range=(-51.2, -51.2, 51.2, 51.2)).eval()
    head.load_state_dict(old_state)
    w = head.obj[0].weight
    assert torch.equal(w[:, -N_SIDES:], torch.zeros(w.shape[0], N_SIDES))
    assert torch.equal(w[:, :-N_SIDES], old_state["obj.0.weight"])
    bev = torch.randn(8, 16, 16)
    boxes = _boxes([[10.0, 3.0], [-10.0, -3.0]])
    labels, attrs = torch.zeros(2, dtype=torch.long), torch.full((2,), -1)
    # the same head computed by hand without the side features
    feat = torch.cat([head.sample_bev(bev, boxes[:, :2]), box_features(boxes, labels, attrs)[:, :-N_SIDES]], 1)
    by_hand = torch.nn.functional.linear(feat, old_state["obj.0.weight"], head.obj[0].bias)
    by_hand = head.obj[2](head.obj[1](by_hand))
    assert torch.allclose(head.objects(bev, boxes, labels, attrs), by_hand, atol=1e-6)
