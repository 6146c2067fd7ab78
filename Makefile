# make run   - set everything up (Debian packages when root, .venv, umvu) and start `umvu bash`
# make test  - set up whatever is missing, then run the test suite
# make bench - compare umvu with native, strace and PRoot (not part of make test)
# make bench-ab REV=... - umvu at an older revision against the working tree (a change's cost)
# make faults - the fault-injection suite, long: thousands of SIGKILLs at every kind of stop
# make fuzz  - hostile arguments over many seeds: the kernel's answers natively, umvu's in each view
# make docs  - write docs/syscalls.md (what umvu does with every system call) from the code

# Debian's own python3 where there is one: built with PGO and LTO, it serves each intercepted call
# about a fifth faster than a plain source build (a pyenv python3 may come first on PATH).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := $(VENV)/.deps
STAMP  := $(VENV)/.installed
EXAMPLES := $(VENV)/share/pyfuse3-examples
# Debian packages the tests and benchmarks run for real
DEBS   := python3-venv python3-dev bash coreutils findutils tar gcc make libc6-dev strace proot tmux procps git sqlite3 util-linux \
          e2fsprogs fuse2fs squashfuse squashfs-tools fuse3 libfuse3-dev pkg-config python3-fusepy fdisk dosfstools gdisk \
          cpio dpkg fakeroot iproute2 socat netcat-openbsd iputils-ping

.PHONY: run test test-nofast bench bench-ab faults fuzz docs lint deps clean

FASTLIB := umvu/libumvufast.so

run: $(STAMP) $(FASTLIB)
	$(BIN)/umvu bash

test: $(STAMP) $(EXAMPLES)/hello.py $(FASTLIB)
	$(BIN)/pytest -q $(PYTEST_ARGS)

# the whole suite again with the in-process fast path off in every session: every path call stops
# (issue 18; what umvu does for programs the library does not reach: static, Go, no LD_PRELOAD)
test-nofast: $(STAMP) $(EXAMPLES)/hello.py $(FASTLIB)
	UMVU_FAST_PATH=0 $(BIN)/pytest -q $(PYTEST_ARGS)

# the fast path's library, preloaded into traced processes (umvu/fastpath.c, umvu/fast.py); its
# wrappers call one another directly, never a program's function of the same name
$(FASTLIB): umvu/fastpath.c
	$(CC) -O2 -Wall -Wextra -shared -fPIC -fno-semantic-interposition -o $@ $< -ldl

# FAULT_SECONDS per round (two rounds: two CPUs, then --pin); each must inject FAULT_MIN_KILLS.
faults: $(STAMP) $(FASTLIB)
	FAULT_SECONDS=$${FAULT_SECONDS:-120} FAULT_MIN_KILLS=$${FAULT_MIN_KILLS:-3000} $(BIN)/pytest -q tests/test_faults.py

bench: $(STAMP) $(EXAMPLES)/hello.py $(FASTLIB)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# umvu against itself: an older revision (REV) and the working tree, workload by workload, in turns
bench-ab: $(STAMP)
	$(BIN)/python bench/ab.py $(REV) -o docs/benchmarks-ab.md

# The hostile-argument comparison (tests/test_hostile.py) over many seeds, every view each.
fuzz: $(STAMP) $(FASTLIB)
	FUZZ_SEEDS=$${FUZZ_SEEDS:-$$(seq -s, 1 100)} FUZZ_CALLS=$${FUZZ_CALLS:-2000} $(BIN)/pytest -q tests/test_hostile.py

# docs/syscalls.md: every x86_64 call and what umvu does with it, generated from the code
docs: $(STAMP)
	$(BIN)/python -m umvu.catalog docs/syscalls.md

lint: $(STAMP)
	$(BIN)/ruff check umvu modules tests bench tools
	$(BIN)/python tools/layers.py
	$(BIN)/python tools/startup_imports.py
	$(BIN)/lint-imports

# Debian packages: installed only when running as root and one is missing.
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "note: missing Debian packages (install them as root): $$missing"; \
	  fi; \
	fi

# The package is installed in place as a tree of links (setuptools' "strict" editable mode): the
# venv's python finds it by a path, where the default mode's import hook cost every python started
# there, umvu included, about 5 ms of its start-up.  A file added to the package needs a link of its
# own: the package's directories are prerequisites of the links (a directory's time changes when a
# file is added or renamed in it).
$(DEPS): pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,fuse]' --config-settings editable_mode=strict
	touch $(DEPS)

$(STAMP): $(DEPS) umvu umvu/calls modules
	$(BIN)/pip install -q --no-deps -e . --config-settings editable_mode=strict
	touch $(STAMP)

# pyfuse3's example file systems (in its sdist, not its wheel): the tests and bench run them
$(EXAMPLES)/hello.py: $(STAMP)
	$(BIN)/python tools/pyfuse3_examples.py $(EXAMPLES)

clean:
	rm -rf $(VENV) build *.egg-info $(FASTLIB)
