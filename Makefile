# privgan: `make demo` and `make test` work on a fresh machine (they create .venv and install).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.privgan-installed
# Keep W&B offline and its files out of $HOME unless the user says otherwise.
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1

.PHONY: install browser demo test test-all bench-lfw bench-split bench-gan bench-release bench-resume bench-private bench-attacks bench-scale clean

install: $(STAMP)

# Order matters: the local torch build first (pinned), then everything else under the same
# pins, then facenet-pytorch without its stale torch<2.3 metadata.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c constraints.txt -e '.[test]'
	$(PIP) install -q --no-deps facenet-pytorch==2.6.0
	$(PY) -c "import torch, torchvision, lightning, opacus, wandb, cv2, facenet_pytorch; assert torch.__version__.startswith('2.14.1'), torch.__version__; assert cv2.__version__ < '5', cv2.__version__"
	touch $(STAMP)

# Headless Chromium for the test that looks at the rendered report (Debian's package; root only).
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser test"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } || \
	  echo "warning: could not install chromium; the browser test will be skipped"; \
	else echo "note: no Chromium and no root apt-get; the browser test will be skipped (apt-get install chromium)"; fi

demo: $(STAMP)
	$(PY) -m privgan.cli sweep --config recipes/quickstart_split_lfw.yaml \
	  --grid model.init_args.activation_noise=0,0.5,1,2 --out runs/demo --skip-done
	$(PY) -m privgan.cli curve runs/demo --out runs/demo/frontier.png
	@echo "demo: curve per run in runs/demo/*/curve.png, frontier runs/demo/frontier.png, table runs/demo/sweep.csv,"
	@echo "      W&B offline runs in runs/demo/*/wandb/ (upload with: $(VENV)/bin/wandb sync runs/demo/*/wandb/offline-run-*)"

test: $(STAMP) browser
	$(PY) -m pytest -q -m "not slow" --timeout=900

test-all: $(STAMP)
	$(PY) -m pytest -q --timeout=3600

bench-lfw: $(STAMP)
	$(PY) benchmarks/lfw_verification.py

bench-split: $(STAMP)
	$(PY) benchmarks/split_table.py

bench-gan: $(STAMP)
	$(PY) benchmarks/gan_leakage.py planted
	$(PY) benchmarks/gan_leakage.py train --minutes 95
	$(PY) benchmarks/gan_leakage.py table

# An interrupted `make demo` resumes to the same frontier: the demo's sweep to the end, then again with
# Ctrl-C (SIGINT to its process group) at 45 % of that time and rerun; compares curves and sweep.csv
# (~2.5 x the demo's time; writes benchmarks/results/demo_resume.json).
bench-resume: $(STAMP)
	$(PY) benchmarks/demo_resume.py

# Release filter: recall per edit of planted copies and held-out false blocks, on LFW and LFW made unlike LFW (~25 min on 2 cores).
bench-release: $(STAMP)
	$(PY) benchmarks/release_robustness.py

# Private models worth using (issue 10): public pretraining, DP fine-tuning by photo and by person, the DP GAN
# sweep; hours on 2 CPU cores (writes benchmarks/results/private.json and private.md).
bench-private: $(STAMP)
	$(PY) benchmarks/private.py --parts split,gan --sweep

# Stronger attacks on the split table's models (issue 11): face-GAN prior (the public GAN of bench-private),
# data-free, linkage, model inversion, one-run audit (writes benchmarks/results/attacks.json).
bench-attacks: $(STAMP)
	$(PY) benchmarks/attacks.py

# Scale-out and monitoring cost (issue 12): images/s on 1 and 2 processes (ddp_spawn / dp_ddp_spawn, gloo), with
# and without DP; attack share of the fit, synchronous and asynchronous (writes benchmarks/results/scale.json).
bench-scale: $(STAMP)
	$(PY) benchmarks/scale.py

clean:
	rm -rf runs .pytest_cache
