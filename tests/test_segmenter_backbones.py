"""Pretrained image backbones by local path: ``backbone = "hf:<folder>"`` takes any transformers
``AutoBackbone`` checkpoint (tiny random Swin and ConvNeXt here, written with save_pretrained)."""

from __future__ import annotations

import numpy as np
import pytest

from segmenter import Segmenter, SegmenterConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from transformers import ConvNextConfig, ConvNextModel, SwinConfig, SwinModel

    root = tmp_path_factory.mktemp("backbones")
    SwinModel(SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1],
                         num_heads=[1, 1, 1, 1], window_size=2)).save_pretrained(root / "swin")
    ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])
                  ).save_pretrained(root / "convnext")
    return root


def batch(n: int = 2, size: int = 64):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    priors = rng.random((n, size, size)).astype(np.float32)
    targets = np.zeros((n, size, size), np.float32)
    targets[:, 16:40, 16:40] = 1.0
    return images, priors, ["the red circle", "the left one"][:n], targets


@pytest.mark.parametrize("name, channels", [("swin", [16, 32, 64, 128]), ("convnext", [8, 16, 24, 32])])
def test_an_hf_backbone_trains_predicts_and_round_trips(checkpoints, text_encoder, tmp_path, name,
                                                        channels):
    cfg = SegmenterConfig(backbone=f"hf:{checkpoints / name}", image_size=64, lr=3e-3)
    seg = Segmenter(cfg, text_encoder=text_encoder)
    assert seg.model.encoder.channels == channels
    images, priors, phrases, targets = batch()
    losses = [seg.train_step(images, priors, phrases, targets)["loss"] for _ in range(8)]
    assert losses[-1] < losses[0]  # it learns
    probs = seg.predict(images, priors, phrases)
    assert probs.shape == (2, 64, 64) and np.isfinite(probs).all()
    seg.save(tmp_path / "seg.pt")
    again = Segmenter.load(tmp_path / "seg.pt", text_encoder=text_encoder)
    assert np.array_equal(again.predict(images, priors, phrases), probs)


def test_the_backbone_weights_come_from_the_folder(checkpoints, text_encoder):
    from transformers import SwinModel

    seg = Segmenter(SegmenterConfig(backbone=f"hf:{checkpoints / 'swin'}", image_size=64),
                    text_encoder=text_encoder)
    saved = SwinModel.from_pretrained(checkpoints / "swin").state_dict()
    mine = seg.model.encoder.model.state_dict()
    key = "embeddings.patch_embeddings.projection.weight"
    assert np.array_equal(mine[f"swin.{key}"].numpy(), saved[key].numpy())


def test_bad_hf_folders_are_named(tmp_path, text_encoder):
    with pytest.raises(FileNotFoundError, match="config.json does not exist"):
        Segmenter(SegmenterConfig(backbone=f"hf:{tmp_path / 'nothing'}", image_size=64),
                  text_encoder=text_encoder)
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=16)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="'bert' checkpoint, which transformers cannot use as a backbone"):
        Segmenter(SegmenterConfig(backbone=f"hf:{tmp_path / 'bert'}", image_size=64),
                  text_encoder=text_encoder)
    with pytest.raises(ValueError, match="'cnn', 'hf:<checkpoint folder>' or 'timm:<model name>'"):
        SegmenterConfig(backbone="swin")


@pytest.mark.slow
def test_l2l_run_trains_a_tiny_swin_on_the_refer_fixture(checkpoints, tmp_path, capsys):
    import json

    from experiments.run import main as run_main
    from refer_fixtures import write_refer_fixture

    write_refer_fixture(tmp_path / "refer")
    out = tmp_path / "run"
    argv = ["--config", "smoke", "--dataset", "refcoco", "--data-root", str(tmp_path / "refer"),
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
            "--label-ratio", "0.5", "--agent", "threshold", "data_options={}",
            f'segmenter.backbone="hf:{checkpoints / "swin"}"', "segmenter.image_size=64",
            'env.reward="hybrid"', "env.calibration_every=0", "env.probe_size=0",
            "warmup_steps=4", "loop_steps=16", "chunk_steps=8", "eval_every=0", "log_images=0",
            "threads=1"]
    assert run_main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["metrics"]) == {"val", "testA", "testB"}
    assert res["config"]["segmenter"]["backbone"].startswith("hf:")
    assert res["pseudo_labels"]["steps"] == 16
