# pii_guard -- PGXS build.
#
#   make            build the module
#   make install    install it into the server that PG_CONFIG names
#   make test       install what is missing, build, and run every test suite
#                   against a throwaway cluster (see test/run.sh)
#   make demo       the guided demonstration (examples/)
#   make bench      the benchmarks (bench/), ratios against peers in one run
#   make bench-citus    pii_guard on Citus vs one node and vs Citus alone
#                   (bench/citus.sh)
#   make soak       a long mixed load, then consistency checks (DURATION=s)
#   make lint       cppcheck, clang-tidy and clang's warnings on src/
#                   (test/lint.sh)
#   make fuzz       libFuzzer targets, FUZZ_SECONDS (60) each (fuzz/run.sh)
#   make fuzz-regress   replay the fuzz corpus and regression inputs
#   make test-citus     pii_guard on a Citus cluster (coordinator and two
#                   workers on this machine; Citus built once from its
#                   source tarball and cached; test/citus/run.sh)
#   make test-memcheck  every test suite with pii_guard built with
#                   AddressSanitizer and UndefinedBehaviorSanitizer
#
# The test, demo and bench targets work before the PostgreSQL development
# packages are installed: their scripts install them first, so this file only
# includes PGXS when it is there.

PG_MAJOR ?= 15
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/$(PG_MAJOR)/bin/pg_config) pg_config)

MODULE_big = pii_guard
OBJS = \
	src/pii_guard.o \
	src/owner.o \
	src/citus.o \
	src/statement.o \
	src/keys.o \
	src/crypto.o \
	src/enctype.o \
	src/policy.o \
	src/reveal.o \
	src/exports.o \
	src/views.o \
	src/lookup.o \
	src/write.o \
	src/ddl.o \
	src/cluster.o \
	src/hooks.o \
	src/audit.o \
	src/audit_events.o \
	src/audit_queue.o \
	src/audit_worker.o \
	src/audit_archive.o \
	src/limits.o \
	src/limitstate.o \
	src/mask.o \
	src/detect.o \
	src/fake.o \
	src/shred.o

EXTENSION = pii_guard
DATA = $(wildcard sql/pii_guard--*.sql)
# an anonymised dump for developers (pii_guard.anonymize_into + pg_dump)
SCRIPTS = bin/pii_guard_dump
EXTRA_CLEAN = fuzz/build

# pg_regress suites, in order; test/run.sh runs them against its own cluster.
REGRESS = \
	encrypted_types \
	bad_input \
	blind_index \
	mask \
	detect \
	policy_lint \
	subject \
	data_retention shredding \
	privileges \
	keys \
	masking_views \
	lookup \
	audit \
	limits \
	limits_approvals \
	views_copy_partitions

SHLIB_LINK += -lcrypto
# -Wall -Wextra.  PostgreSQL's headers are included as system headers (the
# server include directory is given again with -isystem, which makes GCC and
# clang treat it so): their inline functions trip -Wunused-parameter, which
# our own code does not.
PG_CFLAGS += -Wall -Wextra
PG_CPPFLAGS += -isystem $(includedir_server)
# CI and `make test` build with warnings as errors.
ifdef WERROR
PG_CFLAGS += -Werror
endif
# `make test-memcheck` builds with AddressSanitizer and UndefinedBehavior-
# Sanitizer (test/lib.sh, in a copy of the sources).
ifdef SANITIZE
PG_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -g
SHLIB_LINK += -fsanitize=address,undefined
endif

# No LLVM bitcode: it would need clang on every build machine, and JIT
# inlining of these functions gains nothing measurable.
override with_llvm = no

# make installcheck: the pg_regress suites against a running server that
# preloads pii_guard (PGHOST, PGPORT, PGUSER as for psql); make check: on a
# temporary instance of their own (test/check.sh: no root, no running
# server).  PGXS has no `make check` for extensions; ours is used when
# `check` is the only goal, so that no other make run warns about a
# replaced recipe.
CONTRIB_TESTDB = pii_guard_regress
REGRESS_OPTS = --load-extension=pii_guard

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifeq ($(MAKECMDGOALS),check)
.PHONY: check
check:
	@PG_MAJOR=$(PG_MAJOR) PG_CONFIG=$(PG_CONFIG) REGRESS="$(REGRESS)" ./test/check.sh
else ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
all:
	@echo "PostgreSQL server development files not found (PG_CONFIG=$(PG_CONFIG))." >&2
	@echo "Run 'make test' (installs them as root) or: apt-get install postgresql-server-dev-$(PG_MAJOR) libssl-dev" >&2
	@exit 1
endif

.PHONY: test demo bench soak lint fuzz fuzz-regress test-memcheck test-citus bench-citus

test:
	@PG_MAJOR=$(PG_MAJOR) REGRESS="$(REGRESS)" ./test/run.sh

test-citus:
	@PG_MAJOR=$(PG_MAJOR) ./test/citus/run.sh

test-memcheck:
	@PG_MAJOR=$(PG_MAJOR) REGRESS="$(REGRESS)" SANITIZE=1 ./test/run.sh

lint:
	@PG_MAJOR=$(PG_MAJOR) ./test/lint.sh

FUZZ_SECONDS ?= 60
fuzz:
	@PG_MAJOR=$(PG_MAJOR) FUZZ_SECONDS=$(FUZZ_SECONDS) ./fuzz/run.sh fuzz

fuzz-regress:
	@PG_MAJOR=$(PG_MAJOR) ./fuzz/run.sh regress

demo:
	@PG_MAJOR=$(PG_MAJOR) ./examples/demo.sh

bench:
	@PG_MAJOR=$(PG_MAJOR) ./bench/run.sh

bench-citus:
	@PG_MAJOR=$(PG_MAJOR) ./bench/citus.sh

# make soak DURATION=600: all roles' reads and writes under load, grants
# expiring, a key rotation and re-encryption, limits hit; then a reckoning.
soak:
	@PG_MAJOR=$(PG_MAJOR) DURATION=$(DURATION) ./test/soak.sh
