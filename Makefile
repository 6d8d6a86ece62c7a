# fedrs: one command to set up and run the study, one to run the tests.
#   make study   # venv + data + offline backbone (if missing) + zero-shot + the study's quick tier + report
#   make test    # venv + the whole test suite (unit, integration on ../shared/data, notebooks)
#   make study-privacy  # the privacy tier (DP FedRSCLIP at three noise levels and its runs without DP) + report
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# torch/torchvision pair that installs from this machine's local disk; override for other hosts
TORCH_SPEC  ?= torch==2.14.1 torchvision==0.29.1
# where `make study` imports the archives from (folder of zips / official layouts)
FEDRS_SOURCE ?= ../shared/data
export FEDRS_SOURCE
export PYDEVD_DISABLE_FILE_VALIDATION=1
export FLWR_TELEMETRY_ENABLED=0

.PHONY: setup lab data backbone backbone-tiny zeroshot sweep report study study-full study-status study-privacy test test-fast clean-cache help
# parallel runs of the study grid; one torch thread each is fastest on 2 cores
JOBS        ?= 2
# the study tier `make study` runs (params/make_studies.py writes both tiers); its run folders
# and report go to results/<tier>/
STUDY       ?= params/studies/quick
RESULTS     ?= $(patsubst params/studies/%,results/%,$(STUDY))
FULL_STUDY  ?= params/studies/full
# study-full continues the committed full tier: run folders a clone brought count as finished (the
# sweep stops if this machine's offline backbone is another build than theirs); KEEP_COMMITTED=
# (empty) reruns every run here instead
KEEP_COMMITTED ?= --keep-committed

help:
	@sed -n '2,4p' Makefile

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev,flower,cluster]'
	touch $@

# The notebooks' kernel "fedrs" is registered for this user on every setup, so it always points at
# this checkout's venv (the last checkout to run `make setup` wins)
setup: $(BIN)/.installed
	@$(BIN)/python -m ipykernel install --user --name fedrs --display-name "Python (fedrs)" >/dev/null

# JupyterLab on the notebooks, with the project's kernel
lab: setup
	$(BIN)/jupyter lab notebooks/

# the study's datasets: imported from $(FEDRS_SOURCE) when that folder exists, else downloaded
# (FEDRS_MIRROR, else the official releases) and checked against their checksums; a no-op when
# all are imported and verified
data: setup
	$(BIN)/fedrs data import
	$(BIN)/fedrs data list

backbone: data
	$(BIN)/fedrs backbone pretrain --model fedrs-rsclip-s --if-missing

backbone-tiny: data
	$(BIN)/fedrs backbone pretrain --model fedrs-rsclip-tiny --if-missing --no-card

zeroshot: backbone
	$(BIN)/fedrs zeroshot --model fedrs-rsclip-s

sweep: backbone
	OMP_NUM_THREADS=1 $(BIN)/fedrs sweep $(STUDY) --jobs $(JOBS)

# tables and figures of the tier's run folders, into $(RESULTS)/tables and $(RESULTS)/figures
report: setup
	$(BIN)/fedrs report $(RESULTS)

study: zeroshot sweep report
	@echo "make study: $(RESULTS) regenerated. Tables and figures against the committed ones (nothing listed = identical;"
	@echo "run folders and the model card also record wall times, which differ):"
	@git status --short --untracked-files=all -- $(RESULTS)/tables $(RESULTS)/figures results/zero_shot 2>/dev/null || true
	@echo "make study: what these runs support and what they cannot ($(RESULTS)/tables/claims.md):"
	@cat $(RESULTS)/tables/claims.md

# the full study (issue 16's five parts in order; hours on 2 cores, see params/make_studies.py
# --estimate): resumable, a finished run is skipped and an interrupted one resumed, so re-run it
# after any interruption; then its report into results/full/{tables,figures}
study-full: zeroshot
	OMP_NUM_THREADS=1 $(BIN)/fedrs sweep $(FULL_STUDY) --jobs $(JOBS) $(KEEP_COMMITTED)
	$(BIN)/fedrs report $(patsubst params/studies/%,results/%,$(FULL_STUDY))

# where the full tier stands, part by part (runs by status, measured hours against the cost model's,
# hours left at $(JOBS) jobs); executes nothing, so it is safe beside a running `make study-full`
study-status: $(BIN)/.installed
	@$(BIN)/fedrs sweep $(FULL_STUDY) --status --jobs $(JOBS) $(KEEP_COMMITTED)

# the privacy-utility table (issue 15): FedRSCLIP with central DP at three noise multipliers and
# the runs without DP it is paired against (params/studies/privacy, the full tier's files), resumable
# like study-full; then its report, privacy table included, into results/privacy/{tables,figures}
study-privacy: backbone
	OMP_NUM_THREADS=1 $(BIN)/fedrs sweep params/studies/privacy --jobs $(JOBS)
	$(BIN)/fedrs report results/privacy

test: setup
	$(BIN)/python -m pytest -q tests

test-fast: setup
	$(BIN)/python -m pytest -q tests -m "not realdata"

clean-cache:
	rm -rf cache
