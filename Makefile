# The two commands of the README. Each sets up .venv first (scripts/setup.sh); `make test` lints, then tests.
.PHONY: demo test setup clean

.venv/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: .venv/.installed

demo: .venv/.installed
	.venv/bin/sglab demo --out sglab-demo

test: .venv/.installed
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q

clean:
	rm -rf .venv sglab-demo
