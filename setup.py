"""Packaging: the top-level folders install as subpackages of ``flanforge``."""

from setuptools import find_packages, setup

SUBPACKAGES = ("launcher", "mixtures", "model", "kernels")


def _packages():
    packages = ["flanforge"]
    package_dir = {"flanforge": "flanforge"}
    for top in SUBPACKAGES:
        package_dir[f"flanforge.{top}"] = top
        packages.append(f"flanforge.{top}")
        for sub in find_packages(where=top):
            packages.append(f"flanforge.{top}.{sub}")
            package_dir[f"flanforge.{top}.{sub}"] = f"{top}/{sub.replace('.', '/')}"
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()

setup(
    name="flanforge",
    version="0.1.0",
    description="Flan-style multi-task instruction fine-tuning on DeepSpeed ZeRO",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    # Ranges: what the code works with, capped below the next major version where one is
    # known or likely to break it. The exact versions CI installs are requirements.lock's.
    install_requires=[
        # torch is installed by the set-up script first (CPU build here, the
        # user's CUDA build on a cluster); this range never upgrades it.
        "torch>=2.4,<3",
        "deepspeed>=0.16,<1",
        "transformers>=4.50,<6",  # logits_to_keep (evaluation); 6 may drop what 5 deprecated
        "datasets>=3.0,<6",
        # object storage (mixtures/storage/): fsspec URLs, S3 through s3fs (calendar versions, released together)
        "fsspec>=2024.6,<2028",
        "s3fs>=2024.6,<2028",
        "webdataset>=0.2.86,<2",
        "sentencepiece>=0.2,<1",
        "tensorboard>=2.15,<3",
        "jinja2>=3.1,<4",  # the sandbox and cost checks follow its AST
        "pyyaml>=6.0,<7",
        "tqdm>=4.66,<5",
        "safetensors>=0.4,<1",
        "pyarrow>=15",
        "rouge-score>=0.1.2,<0.2",  # ROUGE as T5 computes it (evaluation)
        "matplotlib>=3.7,<4",  # evaluation report plots
        "xxhash>=3.0,<5",  # shard member checksums: xxh3-64, about 3x crc32c's speed here (mixtures/streaming/chunks.py)
    ],
    extras_require={
        # accelerate: HF Trainer's runtime, for the side-by-side benchmark that CI runs in quick mode (and lm-eval's HFLM).
        "test": ["pytest>=8,<10", "hypothesis>=6.100,<7", "accelerate>=1.0,<2", "packaging>=23",
                 "lm-eval==0.4.13",  # parity tests run lm-evaluation-harness itself
                 "moto[server]>=5.0,<6"],  # a real S3 server on 127.0.0.1 for the storage tests
        "triton": ["triton>=3.0,<4"],
    },
    entry_points={"console_scripts": ["flanforge=flanforge.launcher.cli:entry"]},
)
