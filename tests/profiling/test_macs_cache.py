"""adafocus_tf/profiling/macs_cache.py: a config's cost kept on disk."""
import json
import os

import pytest

import helpers
from adafocus_tf import local_cache
from adafocus_tf.profiling import flops
from adafocus_tf.profiling import macs_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv(local_cache.CACHE_DIR_ENV, str(tmp_path))
  return os.path.join(str(tmp_path), macs_cache.SUBDIR)


def test_counted_once_then_read(cache):
  calls = []

  def count():
    calls.append(1)
    return {"glance": 3, "per_video": {"total": 7}, "gflops": 0.5}

  first = macs_cache.cached("k", count)
  second = macs_cache.cached("k", count)
  assert first == second == {"glance": 3, "per_video": {"total": 7},
                             "gflops": 0.5}
  assert calls == [1]
  assert os.listdir(cache) == ["k.json"]  # no temporary file left


def test_unreadable_file_is_counted_anew_and_replaced(cache):
  os.makedirs(cache)
  with open(os.path.join(cache, "k.json"), "w") as f:
    f.write('{"glance": 3, "per_vi')  # a write cut short by a crash
  assert macs_cache.cached("k", lambda: {"glance": 4}) == {"glance": 4}
  with open(os.path.join(cache, "k.json")) as f:
    assert json.load(f) == {"glance": 4}


def test_read_only_cache_still_counts(cache):
  os.makedirs(cache)
  os.chmod(cache, 0o500)
  try:
    assert macs_cache.cached("k", lambda: {"glance": 5}) == {"glance": 5}
  finally:
    os.chmod(cache, 0o700)


def test_key_follows_the_model_not_the_training_settings():
  cfg = helpers.tiny_config()
  key = macs_cache.cache_key(cfg, ())
  cfg.stage1.batch_size += 1
  cfg.seed += 1
  assert macs_cache.cache_key(cfg, ()) == key
  cfg.model.patch_size += 8
  assert macs_cache.cache_key(cfg, ()) != key


def test_video_macs_equal_cached_and_counted(cache):
  cfg = helpers.tiny_config()
  counted = flops.video_macs(cfg)
  assert len(os.listdir(cache)) == 1
  assert flops.video_macs(cfg) == counted
  assert counted["per_video"]["total"] > 0
