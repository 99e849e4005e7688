"""The grounding head's object features: the sides the prompts name are steps the head can read, and a head
trained before them loads unchanged."""

import torch

from perception.models.heads.grounding import N_GEOM, N_PRED, N_SIDES, GroundingHead, box_features, predicates


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
    assert torch.allclose(head.objects(bev, boxes, labels, attrs)[:, :head.dim], by_hand, atol=1e-6)


def _text(sentences: torch.Tensor) -> dict:
    P = len(sentences)
    return {"tokens": torch.zeros(P, 3, 384), "mask": torch.ones(P, 3, dtype=torch.bool), "sentence": sentences}


def test_a_head_trained_before_the_predicate_term_loads_and_scores_what_it_did():
    """A state without ``pred`` (the shipped head's) loads with the term at zero: the logits are the head's
    without the term; the objects carry their predicates after the queries."""
    torch.manual_seed(0)
    plain = GroundingHead(bev_channels=8, xy_range=(-51.2, -51.2, 51.2, 51.2), predicates=False).eval()
    head = GroundingHead(bev_channels=8, xy_range=(-51.2, -51.2, 51.2, 51.2)).eval()
    with torch.no_grad():  # a term that is not zero before loading: the loading must set it to zero
        head.pred.weight.normal_()
        head.pred.bias.normal_()
    head.load_state_dict(plain.state_dict())
    assert torch.equal(head.pred.weight, torch.zeros(N_PRED, 384))
    assert torch.equal(head.pred.bias, torch.zeros(N_PRED))
    bev, boxes = torch.randn(8, 16, 16), _boxes([[10.0, 3.0], [-10.0, -3.0], [25.0, -8.0]])
    labels, attrs = torch.zeros(3, dtype=torch.long), torch.full((3,), -1)
    obj = head.objects(bev, boxes, labels, attrs)
    assert obj.shape == (3, head.dim + N_PRED) and torch.equal(obj[:, head.dim:], predicates(boxes))
    text = _text(torch.nn.functional.normalize(torch.randn(2, 384), dim=-1))
    assert torch.allclose(head(obj, text), plain(plain.objects(bev, boxes, labels, attrs), text), atol=1e-6)


def test_the_prompt_weighs_the_side_predicates_directly():
    """Two prompts whose token features are the same and whose sentence vectors differ, one meaning x > 0 and
    one x < 0: the predicate term alone (every other weight of the head frozen at its start) learns the sign
    in a hundred steps, every box ranked right for both prompts."""
    torch.manual_seed(1)
    head = GroundingHead(bev_channels=4, xy_range=(-51.2, -51.2, 51.2, 51.2), token_drop=0.0, token_noise=0.0)
    opt = torch.optim.Adam(head.pred.parameters(), lr=1e-2)
    sent = torch.nn.functional.normalize(torch.randn(2, 384), dim=-1)
    gen = torch.Generator().manual_seed(2)
    for _ in range(100):
        xy = (torch.rand(64, 2, generator=gen) - 0.5) * 60
        obj = head.objects(torch.zeros(4, 8, 8), _boxes(xy.tolist()), torch.zeros(64, dtype=torch.long),
                           torch.full((64,), -1))
        loss = head.loss(head(obj, _text(sent)), torch.stack([xy[:, 0] > 0, xy[:, 0] < 0], 1).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    xy = torch.tensor([[5.0, 1.0], [-5.0, 1.0], [20.0, -10.0], [-20.0, 10.0]])
    obj = head.objects(torch.zeros(4, 8, 8), _boxes(xy.tolist()), torch.zeros(4, dtype=torch.long),
                       torch.full((4,), -1))
    p = torch.sigmoid(head(obj, _text(sent)))
    assert (p[[0, 2], 0] > 0.8).all() and (p[[1, 3], 0] < 0.2).all(), p
    assert (p[[1, 3], 1] > 0.8).all() and (p[[0, 2], 1] < 0.2).all(), p
