"""Language grounding: prompts from annotations, the offline text encoder, the grounding head (the metric:
tests/test_grounding_metric.py)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.config import load_config
from perception.language import phrasing
from perception.language import prompts as P
from perception.language.prompts import PromptSpec
from perception.types import ATTRIBUTES, DETECTION_CLASSES, Boxes3D

ROOT = Path(__file__).resolve().parents[1]
C = DETECTION_CLASSES.index
A = ATTRIBUTES.index


def scene_boxes() -> Boxes3D:
    """A hand-built frame (ego frame: x forward, y left)."""
    rows = [  # name, class, x, y, vx, vy, attribute, lidar points
        ("car_ahead_left", "car", 10, 5, 5, 0, "vehicle.moving", 50),
        ("car_ahead_right_parked", "car", 20, -5, 0, 0, "vehicle.parked", 40),
        ("car_behind_stopped", "car", -10, 0.5, 0, 0, "vehicle.stopped", 30),
        ("car_oncoming", "car", 25, 1.0, -8, 0, "vehicle.moving", 20),
        ("ped_crossing", "pedestrian", 8, 1, 0.1, 1.2, "pedestrian.moving", 10),
        ("ped_standing", "pedestrian", 30, -4, 0, 0, "pedestrian.standing", 5),
        ("car_far_moving", "car", 45, 0, 6, 0, "vehicle.moving", 3),
        ("car_out_of_range", "car", 60, 0, 6, 0, "vehicle.moving", 2),
        ("car_no_points", "car", 12, 8, 0, 0, "vehicle.parked", 0),
        ("cone", "traffic_cone", 6, -3, 0, 0, None, 8),
    ]
    data = [[x, y, 0.5, 4.0, 1.8, 1.5, 0.0, vx, vy] for _, _, x, y, vx, vy, _, _ in rows]
    return Boxes3D(np.array(data, float), [C(c) for _, c, *_ in rows],
                   attributes=[A(a) if a else -1 for *_, a, _ in rows],
                   instance_tokens=[r[0] for r in rows], num_lidar_pts=[r[-1] for r in rows],
                   num_radar_pts=[0] * len(rows))


@pytest.mark.parametrize("spec, expected", [
    (PromptSpec("car", lat="left"), {"car_ahead_left"}),
    (PromptSpec("car", lat="right"), {"car_ahead_right_parked"}),
    (PromptSpec("car", lon="behind"), {"car_behind_stopped"}),
    (PromptSpec("car", lon="ahead", lat="left"), {"car_ahead_left"}),
    (PromptSpec("car", motion="moving"), {"car_ahead_left", "car_oncoming", "car_far_moving"}),
    (PromptSpec("car", motion="parked"), {"car_ahead_right_parked"}),
    (PromptSpec("car", motion="stopped"), {"car_behind_stopped"}),
    (PromptSpec("pedestrian", motion="crossing"), {"ped_crossing"}),
    (PromptSpec("pedestrian", motion="standing"), {"ped_standing"}),
    (PromptSpec("car", within=15), {"car_ahead_left", "car_behind_stopped"}),
    (PromptSpec("object", beyond=25), {"ped_standing", "car_far_moving", "car_oncoming"}),  # oncoming: 25.02 m
    (PromptSpec("car", radial="approaching"), {"car_oncoming"}),
    (PromptSpec("car", radial="away"), {"car_ahead_left", "car_far_moving"}),
    (PromptSpec("car", faster=5), {"car_oncoming", "car_far_moving"}),
    (PromptSpec("vehicle", motion="moving", lon="ahead", within=20), {"car_ahead_left"}),
    (PromptSpec("bus"), set()),
])
def test_referred_sets_of_a_hand_built_frame(spec, expected):
    got = set(P.referred(spec, scene_boxes()))
    assert got == expected
    assert "car_out_of_range" not in got and "car_no_points" not in got  # the eval would not score them


def test_distance_cut_offs_are_strict():
    b = Boxes3D(np.array([[9.99, 0, 0, 4, 2, 1.5, 0, 0, 0], [10.01, 0, 0, 4, 2, 1.5, 0, 0, 0]]), [0, 0],
                instance_tokens=["in", "out"], num_lidar_pts=[5, 5])
    assert P.referred(PromptSpec("car", within=10), b) == ["in"]
    assert P.referred(PromptSpec("car", beyond=10), b) == ["out"]


def test_bad_spec_is_a_clear_error():
    with pytest.raises(ValueError, match="group"):
        PromptSpec("spaceship")
    with pytest.raises(ValueError, match="motion"):
        PromptSpec("car", motion="flying")


def test_train_and_heldout_phrasings_are_disjoint():
    specs = [PromptSpec(g, motion=m, lon="ahead", lat="left", within=20, faster=5, radial="approaching")
             for g, m in (("car", "moving"), ("pedestrian", "walking"), ("vehicle", "parked"))]
    for s in specs:
        assert P.render(s, "train") != P.render(s, "heldout")
    train_words = {w for s in specs for w in P.render(s, "train").split()}
    for group in P.GROUPS:
        for noun in phrasing.NOUNS["heldout"][group]:
            assert noun not in {n for v in phrasing.NOUNS["train"].values() for n in v}
    assert "automobiles" not in train_words
    # every training phrasing of every part, word by word: none of the held-out paraphrases' carrying words
    def vocabulary(style):
        tables = [phrasing.NOUNS[style], phrasing.LON_WORDS[style], phrasing.LAT_WORDS[style],
                  phrasing.MEASURE_WORDS[style], {"m": [w for v in phrasing.MOTION_WORDS[style].values()
                                                       for pair in v for w in pair]}, {"p": phrasing.PREFIXES[style]}]
        return {w for t in tables for v in t.values() for text in v for w in re.findall(r"[a-z]+", text.lower())}

    assert vocabulary("train") & phrasing.HELDOUT_ONLY == set()
    assert {"front", "rear", "closer", "farther", "automobiles"} <= vocabulary("heldout") & phrasing.HELDOUT_ONLY
    # the development paraphrases: words of their own, none of the held-out set's, and every spec said
    # differently from both other styles
    assert (vocabulary("train") | vocabulary("heldout")) & phrasing.DEV_ONLY == set()
    assert vocabulary("dev") & phrasing.HELDOUT_ONLY == set()
    assert phrasing.DEV_ONLY <= vocabulary("dev")
    for s in specs:
        assert P.render(s, "dev") not in (P.render(s, "train"), P.render(s, "heldout"))
    assert P.render(PromptSpec("car", motion="moving", lon="ahead", lat="left")) == "moving cars ahead on the left"
    with pytest.raises(ValueError, match="style"):
        P.render(specs[0], "poetry")


def _frames():
    base = scene_boxes()
    frames = []
    for k in range(6):  # the scene moves: objects drift backwards past the ego
        d = base.data.copy()
        d[:, 0] -= 4.0 * k
        frames.append((f"sample{k}", Boxes3D(d, base.labels, **base.fields)))
    return frames


def test_generation_is_deterministic_and_its_referents_are_right():
    a = P.scene_prompts("scene-x", _frames(), n_specs=30, seed=0)
    b = P.scene_prompts("scene-x", _frames(), n_specs=30, seed=0)
    c = P.scene_prompts("scene-x", _frames(), n_specs=30, seed=1)
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)
    assert {r["style"] for r in a} == {"train", "heldout", "dev"}
    assert len(a) == 90
    # the development style draws nothing from the generator: without it, the other records are the same
    without = P.scene_prompts("scene-x", _frames(), n_specs=30, seed=0, styles=("train", "heldout"))
    assert without == [r for r in a if r["style"] != "dev"]
    frames = dict(_frames())
    empty_pairs = 0
    for r in a:
        spec = PromptSpec.from_dict(r["spec"])
        assert r["prompt"] == P.render(spec, r["style"], variant=r["variant"])
        for tok, inst in r["frame_token_object_token"].items():
            assert set(inst) == set(P.referred(spec, frames[tok]))
            empty_pairs += not inst
    assert empty_pairs > 0  # prompts that refer to nothing (in some frames) are part of the set


def test_prompt_file_round_trip_and_errors(tmp_path):
    recs = P.scene_prompts("scene-x", _frames(), n_specs=5)
    P.write(tmp_path / "p.json", recs)
    assert P.read(tmp_path / "p.json") == recs
    (tmp_path / "bad.json").write_text(json.dumps([{"prompt": "cars"}]))
    with pytest.raises(ValueError, match="frame_token_object_token"):
        P.read(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="not a JSON prompt file"):
        P.read(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="prompt file not found"):
        P.read(tmp_path / "missing.json")
    # a real NuPrompt record (no style / spec) reads as a training-style prompt
    (tmp_path / "nuprompt").mkdir()
    (tmp_path / "nuprompt" / "a.json").write_text(json.dumps(
        {"scene_token": "s", "prompt": "cars in black", "original_prompt": "black cars",
         "frame_token_object_token": {"t": ["i"]}}))
    assert P.read(tmp_path / "nuprompt")[0]["style"] == "train"


def test_prompt_file_of_a_dataroot(synthetic_root):
    path = P.ensure(synthetic_root, "v1.0-mini", "mini_train", "mini_val", n_train=10, n_val=8)
    recs = P.read(path)
    assert {(r["split"], r["style"]) for r in recs} == {("mini_train", "train"), ("mini_val", "train"),
                                                          ("mini_val", "heldout"), ("mini_val", "dev")}
    from perception.sources.nuscenes import NuScenesSource

    src = NuScenesSource(synthetic_root, "v1.0-mini", "mini_val", cameras=(), lidar_sweeps=0, radar_sweeps=1)
    n_ref = 0
    for r in recs:
        if r["split"] != "mini_val":
            continue
        spec = PromptSpec.from_dict(r["spec"])
        for tok, inst in r["frame_token_object_token"].items():
            assert set(inst) == set(P.referred(spec, src.ground_truth(tok)))
            n_ref += len(inst)
    assert n_ref > 0


def test_prompt_files_are_named_by_their_parameters_and_make_prompts_forces(synthetic_root, capsys):
    """A file made with other counts or splits is never taken for another one; make_prompts --force
    regenerates the config's file (same content: generation is deterministic)."""
    small = P.ensure(synthetic_root, "v1.0-mini", "mini_train", "mini_val", n_train=10, n_val=8)
    other = P.ensure(synthetic_root, "v1.0-mini", "mini_train", "mini_val", n_train=12, n_val=8)
    assert small != other and small.is_file() and other.is_file()
    assert len(P.read(other)) > len(P.read(small))
    from perception.cli.make_prompts import main as make_prompts

    assert make_prompts(["--data-root", str(synthetic_root), "--show", "2"]) == 0
    path = P.ensure_from_config(synthetic_root, load_config("configs/tiny.py")["prompts"], "v1.0-mini",
                                "mini_train", "mini_val")
    before, stamp = path.read_bytes(), (path.stat().st_ino, path.stat().st_mtime_ns)
    assert make_prompts(["--data-root", str(synthetic_root), "--force", "--show", "2"]) == 0
    assert (path.stat().st_ino, path.stat().st_mtime_ns) != stamp and path.read_bytes() == before  # rewritten
    out = capsys.readouterr().out
    assert str(path) in out and "held out as" in out


# -- text encoder --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder():
    from perception.language.text_encoder import TextEncoder

    return TextEncoder()


def test_text_encoder_loads_offline_with_no_network(tmp_path):
    code = ("from perception.language.text_encoder import TextEncoder\n"
            "e = TextEncoder()\n"
            "x = e(['moving cars ahead'])[0]\n"
            "print(tuple(x.tokens.shape), round(float(x.sentence.norm()), 4))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "HF_HOME": str(tmp_path / "hf")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "(5, 384) 1.0"  # [CLS] moving cars ahead [SEP]
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("*.safetensors"))


def test_text_encoder_cache_and_bad_prompts(encoder):
    h0, m0 = encoder.hits, encoder.misses
    a = encoder(["parked cars on the right"])[0]
    b = encoder(["parked  cars on the right "])[0]  # same prompt after whitespace clean-up
    assert b is a and encoder.hits == h0 + 1 and encoder.misses == m0 + 1
    with pytest.raises(ValueError, match="empty prompt"):
        encoder([""])
    with pytest.raises(ValueError, match="empty prompt"):
        encoder(["   "])
    with pytest.raises(TypeError):
        encoder([None])
    long = encoder(["pedestrians " * 170])[0]  # ~2,000 characters
    assert long.truncated and long.tokens.shape == (encoder.max_tokens, encoder.dim)
    assert not a.truncated and torch.isfinite(long.tokens).all()


def test_text_encoder_is_a_pretrained_sentence_model(encoder):
    cars, autos, peds = (e.sentence for e in encoder(["cars", "automobiles", "pedestrians"]))
    assert float(cars @ autos) > float(cars @ peds) + 0.1


def test_text_encoder_rejects_a_directory_that_is_not_a_model(tmp_path):
    from perception.language.text_encoder import TextEncoder

    with pytest.raises(FileNotFoundError, match="config.json"):
        TextEncoder(str(tmp_path))



def test_encoder_probe_separates_what_the_encoder_can_carry(encoder):
    """perception.language.probe: a linear probe per part, fitted on training phrasings, asked about the
    held-out ones. "to our left" shares its side word with the training phrasings: the probe must carry it;
    the table names every part and each held-out phrasing's nearest training phrasing."""
    from perception.language.probe import format_table, probe

    rows = {r.part: r for r in probe(encoder)}
    assert set(rows) == {"ahead/behind", "left/right", "within/beyond", "approaching/away", "moving/stopped",
                         "walking/standing"}
    assert rows["left/right"].acc_sentence >= 0.9 and rows["left/right"].acc_tokens >= 0.9
    assert all(0.0 <= r.acc_sentence <= 1.0 and r.n_train > r.n_asked > 0 for r in rows.values())
    near = dict((h, t) for h, t, _ in rows["left/right"].nearest)
    assert "left" in near["cars to our left"] and "right" in near["cars to our right"]
    table = format_table(list(rows.values()))
    assert len(table.splitlines()) == 1 + len(rows) and "'cars in front of us' ->" in table
    dev = {r.part: r for r in probe(encoder, "dev")}  # asked about the development paraphrases instead
    assert any(h == "cars leftward" for h, _, _ in dev["left/right"].nearest)
    with pytest.raises(ValueError, match="style"):
        probe(encoder, "train")


def test_parse_probe_reads_whole_prompts(encoder, synthetic_root):
    """perception.language.probe --data-root: a slot parser trained on the training-phrasing prompts of one
    split reads the specs of the other split's prompts. With training phrasings (new specs, known words) it
    must read most parts (this small world trains it on one scene's ~460 prompts); held-out paraphrases are read
    wholly right less often (the frozen encoder's limits); misreadings add up to the accuracies."""
    from perception.language.probe import format_parse, probe_prompts

    records = P.read(P.ensure_for(synthetic_root, load_config("configs/tiny.py")))
    result = probe_prompts(encoder, records, steps=600, seeds=2)
    assert set(result.styles) == {"train", "heldout", "dev"} and result.n_train > 100 and result.parsers == 2
    train = result.styles["train"]
    assert min(train["slots"].values()) >= 0.7 and np.mean(list(train["slots"].values())) >= 0.85, train
    assert train["exact"] <= min(train["slots"].values())
    assert result.styles["heldout"]["exact"] < train["exact"]
    for style, s in result.styles.items():
        for slot, acc in s["slots"].items():
            wrong = sum(m[4] for m in result.misreadings if m[:2] == (style, slot))
            assert wrong == pytest.approx((1 - acc) * s["n"], abs=1e-3), (style, slot)
    assert all(m[2] != m[3] and m[5] for m in result.misreadings)
    table = format_parse(result)
    assert "heldout" in table and "most frequent misreadings, heldout" in table
    with pytest.raises(ValueError, match="no spec"):
        probe_prompts(encoder, [{k: v for k, v in r.items() if k != "spec"} for r in records])

@pytest.mark.parametrize("mode", ["lora", "top"])
def test_text_tuner_trains_a_delta_that_the_encoder_loads(encoder, mode):
    """perception.language.text_tuning: gradients reach the tuner and never the packaged weights; the fp16
    delta added at load gives the encodings the tuner computed (the prompt cache then serves them); a delta
    of another shape, another weight or other packaged weights is an error naming it."""
    from perception.language.text_encoder import TextEncoder
    from perception.language.text_tuning import TextTuner

    tuner = TextTuner(encoder, mode, rank=4, layers=2)
    texts = ["moving cars ahead", "people behind us on the left"]
    before = encoder.batch(texts)
    start = tuner.encode(texts)  # a fresh tuner is the packaged encoder (B = 0 / zero delta)
    torch.testing.assert_close(start["tokens"] * start["mask"][..., None], before["tokens"], atol=1e-5, rtol=0)
    opt = torch.optim.SGD(tuner.parameters(), lr=0.5)
    for _ in range(3):  # pull the two prompts' sentence vectors together
        x = tuner.encode(texts)
        loss = -(x["sentence"][0] @ x["sentence"][1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in encoder.model.parameters())
    with torch.no_grad():
        x = tuner.encode(texts)
    assert float(x["sentence"][0] @ x["sentence"][1]) > float(before["sentence"][0] @ before["sentence"][1])
    delta = tuner.export()
    assert all(d.dtype == torch.float16 for d in delta.values()) and tuner.meta()["delta_bytes"] > 0
    assert all(n.startswith(("encoder.layer.4.", "encoder.layer.5.")) for n in delta)
    tuned = TextEncoder(delta=delta, delta_base=tuner.base_fingerprint)
    got = tuned.batch(texts)
    assert tuned.tuned == sum(d.numel() for d in delta.values())
    torch.testing.assert_close(got["sentence"], x["sentence"], atol=2e-3, rtol=0)
    torch.testing.assert_close(encoder.batch(texts)["tokens"], before["tokens"])  # the packaged one is unchanged
    name = next(iter(delta))
    with pytest.raises(ValueError, match="no weight 'bogus'"):
        TextEncoder(delta={"bogus": delta[name]})
    with pytest.raises(ValueError, match=re.escape(name)):
        TextEncoder(delta={name: delta[name][:1]})
    with pytest.raises(ValueError, match="other encoder weights"):
        TextEncoder(delta=delta, delta_base="0" * 40)
    with pytest.raises(ValueError, match="layers"):
        TextTuner(encoder, mode, layers=7)
    with pytest.raises(ValueError, match="mode"):
        TextTuner(encoder, "full")


# -- grounding head -----------------------------------------------------------------------------------------

def test_paraphrase_contrast_trains_the_tuner(encoder):
    """text_tuning.paraphrase_contrast: on one fixed draw of phrasings the InfoNCE falls as the adapters
    train (two phrasings of a spec found among the others, ahead told from behind), gradients reach the
    tuner and never the packaged weights; repeated or single specs are an error."""
    from perception.language.text_tuning import TextTuner, paraphrase_contrast

    specs = [PromptSpec("car", lon="ahead"), PromptSpec("car", lon="behind"), PromptSpec("car", within=10),
             PromptSpec("car", beyond=10), PromptSpec("pedestrian", lat="left"), PromptSpec("pedestrian", lat="right")]
    tuner = TextTuner(encoder, "lora", rank=4, layers=3)
    opt = torch.optim.AdamW(tuner.parameters(), lr=2e-3)
    losses = []
    for _ in range(10):
        loss = paraphrase_contrast(tuner, specs, np.random.default_rng(0))  # the same phrasings each step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(p.grad is None for p in encoder.model.parameters())
    with pytest.raises(ValueError, match="distinct"):
        paraphrase_contrast(tuner, [specs[0], specs[0]], np.random.default_rng(0))
    with pytest.raises(ValueError, match="two specs"):
        paraphrase_contrast(tuner, specs[:1], np.random.default_rng(0))


def test_grounding_head_learns_a_frame():
    """The head alone, on one frame's objects and six prompts, learns to rank every referent first.
    In a process of its own: after the rest of the default suite it fails in the same process (a pedestrian
    ranked under a non-pedestrian), alone and after this module's other tests it passes, for 8 seeds; what
    earlier state changes it is not found yet."""
    code = ("import sys; sys.path.insert(0, 'tests'); import test_language as T; "
            "from perception.language.text_encoder import TextEncoder; T.learn_a_frame(TextEncoder())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def learn_a_frame(encoder):
    from perception.language.text_encoder import pad
    from perception.models.heads import GroundingHead

    torch.manual_seed(0)
    boxes = scene_boxes()
    specs = [PromptSpec("car", lat="left"), PromptSpec("car", motion="parked"), PromptSpec("pedestrian"),
             PromptSpec("car", radial="approaching"), PromptSpec("object", within=15), PromptSpec("bus")]
    text = pad(encoder([P.render(s) for s in specs]))
    inst = list(boxes.instance_tokens)
    target = torch.tensor([[t in P.referred(s, boxes) for s in specs] for t in inst], dtype=torch.float32)
    head = GroundingHead(bev_channels=8, xy_range=(-51.2, -51.2, 51.2, 51.2))
    bev = torch.zeros(8, 32, 32)
    b = torch.as_tensor(boxes.data, dtype=torch.float32)
    labels, attrs = torch.as_tensor(boxes.labels), torch.as_tensor(boxes.attributes)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3)
    for _ in range(300):  # the training-time noise on the text features (paraphrase robustness) slows the fit
        loss = head.loss(head(head.objects(bev, b, labels, attrs), text), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        scores = torch.sigmoid(head(head.objects(bev, b, labels, attrs), text))
    assert scores.shape == (len(inst), len(specs))
    for j in range(len(specs)):
        pos, neg = scores[target[:, j] > 0, j], scores[target[:, j] == 0, j]
        if len(pos):
            assert pos.min() > neg.max(), (specs[j], scores[:, j])
        else:
            assert neg.max() < 0.5


# -- metric -------------------------------------------------------------------------------------------------
