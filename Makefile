# Two commands from a fresh clone: `make demo` and `make test`.
# Both build .venv/ first (only when pyproject.toml changed since the last build).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "flowsiem needs Python >= 3.11 (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/flowsiem generate --scenario obvious --seed 7 --scale 0.25 --out $(DEMO)/days
	$(BIN)/flowsiem run $(DEMO)/days/data.parquet $(DEMO)/days/test.parquet \
		--servers $(DEMO)/days/servers.parquet --servers-baseline $(DEMO)/days/servers_data.parquet \
		--out $(DEMO)/run
	@echo "Outputs: $(DEMO)/days (generated days, truth.json), $(DEMO)/run/profile (profile.json, baseline/*.parquet),"
	@echo "         $(DEMO)/run/alerts.jsonl, $(DEMO)/run/devices.csv"
	@echo "Report:  $(abspath $(DEMO))/run/report.html (open it in a browser)"

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO)
