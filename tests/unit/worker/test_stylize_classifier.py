"""Loading a run's classifier for a style batch, on a real SQLite store: the checkpoint is the whole model."""

from dataclasses import replace

import torch

from core.config import TrainConfig
from db import jobs
from db.engine import make_engine, make_sessionmaker
from db.migrate import upgrade
from db.models import Dataset, Run
from worker.ml.checkpoint import save_model
from worker.ml.models import build_model
from worker.residents import load_classifier
from worker.stylize_job import outcome


def test_a_run_trained_from_imagenet_weights_loads_from_its_checkpoint_alone(tmp_path):
    """Its weights file is not needed (nor looked for): the checkpoint holds the fine-tuned backbone too."""
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    cfg = TrainConfig(arch="resnet18", num_classes=3, image_size=32, weights="imagenet")
    torch.manual_seed(0)
    trained = build_model(replace(cfg.model_config(), weights=None)).eval()
    save_model(trained, tmp_path / "artifacts" / "best.safetensors", {})
    with sessions.begin() as s:
        ds = Dataset(
            name="d", root=str(tmp_path), format="imagefolder", seed=0, split=[0.7, 0.15, 0.15], classes=["a", "b", "c"]
        )
        s.add(ds)
        job = jobs.create_job(s, "train", {"config": cfg.to_json()}, max_attempts=1)
        s.flush()
        s.add(
            Run(
                job_id=job.id,
                dataset_id=ds.id,
                arch="resnet18",
                config=cfg.to_json(),
                weights="imagenet",
                checkpoint_path="best.safetensors",
            )
        )
    with sessions() as s:
        classify = load_classifier(s, s.query(Run).one(), ["a", "b", "c"], tmp_path / "artifacts", torch.device("cpu"))
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = trained(
            (x.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
            / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        )
    assert torch.allclose(classify.logits(x), expected, atol=1e-4)
    engine.dispose()


def test_outcomes():
    assert outcome("Monet", "Monet", "Bosch") == "content"
    assert outcome("Bosch", "Monet", "Bosch") == "style"
    assert outcome("Klimt", "Monet", "Bosch") == "other"
    assert outcome("Monet", "Monet", "Monet") == "same"  # a same-artist pair is its own outcome, named or not
    assert outcome("Klimt", "Monet", "Monet") == "same"
