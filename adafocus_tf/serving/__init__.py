"""Serving a trained run: SavedModel export for TF Serving, and its clients.

  preprocess.py   uint8 frames / serialized SequenceExamples -> network
                  inputs, in the graph (the evaluation transform)
  module.py       the exported graph: ``ServingModule`` around the run's
                  ``Recognizer``, its signatures and outputs
  export.py       ``export_run``: the version directory, written atomically,
                  with its metadata
  client.py       what the clients share: the frames and inputs sent of a
                  video, the answers read (no model code)
  rest_client.py  TF Serving's REST API (``RestClient``)
  grpc_client.py  TF Serving's gRPC API (``GrpcClient``)

The names below are the signature contract (``docs/SERVING.md``) that the
exported graph and the clients share.
"""
SERVING_DEFAULT = "serving_default"
EXAMPLE_SIGNATURE = "tf_example"
SIGNATURES = (EXAMPLE_SIGNATURE, SERVING_DEFAULT)
FRAMES_INPUT = "frames"
EXAMPLES_INPUT = "examples"
