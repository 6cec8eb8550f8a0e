"""The training input pipeline on tf.data service (adafocus_tf/data/
data_service.py, adafocus-data-service): a real dispatcher and two worker
processes on localhost, started by the command."""
import collections
import os
import time

import adafocus_tf  # pylint: disable=unused-import
import numpy as np
import pytest
import tensorflow as tf

import helpers
from adafocus_tf.data import data_service
from adafocus_tf.data import pipeline
from adafocus_tf.runs import run_dir as run_dir_lib
from adafocus_tf.training import experiment

NUM_TRAIN = 16
BATCH = 8
EPOCHS = 2
_MAKE_DATASET = pipeline.make_dataset


@pytest.fixture(scope="module")
def service():
  """``adafocus-data-service --port=0 --local_workers=2``: its address."""
  proc, address = data_service.start_local(2, env=helpers.user_environment())
  yield address
  proc.terminate()
  proc.wait(timeout=30)
  # Stopped cleanly, its workers with it.
  assert proc.returncode == 0


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  # Shards of 4: the dispatcher has splits to hand both workers.
  return helpers.write_dataset(str(tmp_path_factory.mktemp("data")),
                               num_train=NUM_TRAIN, num_val=8,
                               videos_per_shard=4)


def _epoch(cfg, split, epoch, address=""):
  """video id -> frames of one training epoch's whole batches, read as a
  stage reads them (repeated), locally or through ``address``."""
  with data_service.use(address):
    ds = pipeline.make_dataset(cfg.data, split, training=True,
                               batch_size=BATCH, seed=cfg.seed, epoch=epoch,
                               repeat=True)
  videos = {}
  for batch in ds.take(NUM_TRAIN // BATCH):
    for vid, frames in zip(batch["video_id"].numpy(),
                           batch["frames"].numpy()):
      assert vid.decode() not in videos, f"{vid} twice in epoch {epoch}"
      videos[vid.decode()] = frames
  return videos


def test_every_video_once_per_epoch_augmented_as_locally(data_dir, service):
  cfg = helpers.tiny_config(data_dir)
  split = os.path.join(data_dir, "train")
  everyone = {f"v{i:04d}" for i in range(NUM_TRAIN)}
  for epoch in range(EPOCHS):
    local = _epoch(cfg, split, epoch)
    served = _epoch(cfg, split, epoch, service)
    assert set(local) == set(served) == everyone
    # Randomness keyed by (seed, epoch, video id): the same crops, flips
    # and frames whichever process decodes a video.
    for vid, frames in local.items():
      np.testing.assert_array_equal(served[vid], frames)


@pytest.mark.training
def test_a_stage_trains_through_the_service_on_every_video_each_epoch(
    data_dir, service, tmp_path, monkeypatch):
  # The video ids of each epoch's training batches, read on the consumer
  # (after the service's workers), in the order the steps read them;
  # prefetched batches past an epoch's steps come last.
  seen = collections.defaultdict(list)

  def recording(cfg, split, training, batch_size, *args, **kwargs):
    ds = _MAKE_DATASET(cfg, split, training, batch_size, *args, **kwargs)
    if not training:
      return ds
    assert data_service.active() == service
    epoch = kwargs["epoch"]

    def note(ids):
      seen[epoch].extend(v.decode() for v in ids.numpy())
      return ids
    return ds.map(lambda b: {**b, "video_id": tf.py_function(
        note, [b["video_id"]], tf.string)})

  monkeypatch.setattr(pipeline, "make_dataset", recording)
  cfg = helpers.tiny_config(data_dir, stage1__epochs=EPOCHS)
  run = str(tmp_path / "run")
  with data_service.use(service):
    experiment.run_stages(cfg, run, [1], tf.distribute.get_strategy(),
                          progress=False)
  assert os.path.exists(os.path.join(run, "stage1", "done.json"))
  everyone = sorted(f"v{i:04d}" for i in range(NUM_TRAIN))
  assert sorted(seen) == list(range(EPOCHS))
  for epoch in range(EPOCHS):
    # The same videos as a local epoch (test above): each once.
    assert sorted(seen[epoch][:NUM_TRAIN // BATCH * BATCH]) == everyone
  # The service is no part of the run: its config is what it was given, so
  # the run resumes (or goes on) without the service.
  assert run_dir_lib.read_config(run).to_json() == cfg.to_json()


def _free_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_one_input_pipeline_per_job(data_dir):
  cfg = helpers.tiny_config(data_dir)
  context = tf.distribute.InputContext(num_input_pipelines=2,
                                       input_pipeline_id=0)
  with data_service.use("grpc://localhost:5050"):
    with pytest.raises(data_service.DataServiceError,
                       match="feeds one input pipeline per job; this job "
                       "has 2"):
      pipeline.make_dataset(cfg.data, os.path.join(data_dir, "train"),
                            training=True, batch_size=BATCH,
                            input_context=context)


@pytest.mark.parametrize("address", ["localhost:5050", "grpc://localhost",
                                     "grpc://localhost:99999",
                                     "http://localhost:5050"])
def test_an_address_of_another_form_is_refused_naming_it(address):
  with pytest.raises(data_service.DataServiceError) as e:
    data_service.check_reachable(address)
  assert str(e.value) == (f"--data_service={address}: expected "
                          "grpc://HOST:PORT of a tf.data service dispatcher "
                          "(adafocus-data-service)")


@pytest.mark.parametrize("case", ["silent", "multi_worker"])
def test_a_bad_data_service_address_is_one_line_and_writes_nothing(
    data_dir, tmp_path, case):
  port = _free_port()  # nobody listens there
  address = f"grpc://127.0.0.1:{port}"
  strategy = ["--strategy=multi_worker"] if case == "multi_worker" else []
  timeout = 3
  run = tmp_path / "run"
  start = time.monotonic()
  proc = helpers.run_train(
      [f"--data_dir={data_dir}", f"--run_dir={run}", "--stage=1",
       "--noprogress", f"--data_service={address}"] + strategy +
      helpers.tiny_flags(),
      env={data_service.CONNECT_TIMEOUT_ENV: str(timeout)}, check=False)
  elapsed = time.monotonic() - start
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr
  last = proc.stderr.rstrip().splitlines()[-1]
  if case == "silent":
    assert last.startswith(f"error: the tf.data service dispatcher {address} "
                           "cannot be reached ("), last
    assert last.endswith("start one with adafocus-data-service")
  else:
    assert last == (f"error: --data_service={address} feeds one training "
                    "process; --strategy=multi_worker reads its input "
                    "locally")
  # The wait is bounded: the time-out plus the command's start.
  assert elapsed < timeout + 60, elapsed
  assert not run.exists()
