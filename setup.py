"""adafocus-tf: AdaFocus adaptive-focus video recognition in TensorFlow/Keras."""
import setuptools

# The verified stack (see README, "Installation"): tensorflow-io 0.37.1 pairs
# only with TF 2.16, and tf-agents / tensorflow-probability need Keras 2.
STACK = [
    "tensorflow==2.16.2",
    "tf-keras==2.16.0",
    "tensorflow-io==0.37.1",
    "tf-agents==0.19.0",
    "tensorflow-probability==0.23.0",
    "numpy==1.26.4",
    # tf-agents pins it; listing it keeps later installs from moving it.
    "typing-extensions==4.5.0",
]

# Dataset preparation's engine (adafocus-prepare), an extra: it adds about
# 300 MB and 15 packages (pyarrow among them) that training hosts never use.
# 2.77.0 is the last release that imports beside tf-agents' pinned
# typing-extensions; the tfrecord extra brings its CRC library.
BEAM = "apache-beam[tfrecord]==2.77.0"

# One console script per command of adafocus_tf/cli (its __init__.py lists
# them; tests/cli/test_cli.py checks that this list matches).
CONSOLE_SCRIPTS = [
    "adafocus-train = adafocus_tf.cli.train:run",
    "adafocus-prepare = adafocus_tf.cli.prepare:run",
    "adafocus-synthetic = adafocus_tf.cli.synthetic:run",
    "adafocus-evaluate = adafocus_tf.cli.evaluate:run",
    "adafocus-predict = adafocus_tf.cli.predict:run",
    "adafocus-calibrate-exit = adafocus_tf.cli.calibrate_exit:run",
    "adafocus-export = adafocus_tf.cli.export:run",
    "adafocus-serve-client = adafocus_tf.cli.serve_client:run",
    "adafocus-convert = adafocus_tf.cli.convert:run",
    "adafocus-flops = adafocus_tf.cli.flops:run",
    "adafocus-profile = adafocus_tf.cli.profile:run",
    "adafocus-data-service = adafocus_tf.cli.data_service:run",
]

setuptools.setup(
    name="adafocus-tf",
    version="0.1.0",
    description="AdaFocus (adaptive focus video recognition) in TensorFlow",
    packages=setuptools.find_packages(include=["adafocus_tf", "adafocus_tf.*"]),
    python_requires=">=3.11,<3.12",
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    install_requires=STACK + [
        "av>=12",          # video decoding (PyAV bundles ffmpeg)
        "absl-py>=1.4",
        "pillow>=10",
        "tqdm>=4.66",
        "pyyaml>=6",       # --config_file=FILE.yaml
        # The run directory's lock (adafocus_tf/runs/run_lock.py).
        "filelock>=3.12,<5",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            # pytest.ini runs the tests in parallel processes (-n auto).
            "pytest-xdist>=3.5",
            "moto[server]>=5",
            "boto3>=1.34",
            "tensorflow-serving-api==2.16.1",
            BEAM,
        ],
        # adafocus-prepare runs on Apache Beam (docs/SCALING.md).
        "beam": [BEAM],
        # TF Serving's gRPC client (adafocus-serve-client --grpc); its
        # release pairs with the pinned TensorFlow.
        "serve": ["tensorflow-serving-api==2.16.1"],
        # TensorBoard's "Profile" tab. Pinned: 2.16.0 matches TensorBoard
        # 2.16 and adds only gviz-api; later releases (xprof) pull in
        # protobuf and typing-extensions versions that break the stack.
        "profile": ["tensorboard-plugin-profile==2.16.0"],
        # adafocus-convert (docs/CONVERT.md) needs nothing
        # more: it reads PyTorch checkpoints without PyTorch
        # (adafocus_tf/convert/torch_pickle.py). PyTorch cannot be listed
        # here: torch 2.x requires typing-extensions>=4.10 and tf-agents
        # 0.19 pins typing-extensions==4.5.0, so pip refuses the pair. The
        # parity tests run the PyTorch reference in a separate environment
        # with torch==2.13.0+cpu (the CPU build; tests/convert/test_convert.py).
        "convert": [],
    },
)
