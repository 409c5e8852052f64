# test/scenario/readme.sh -- README.md cannot drift from the code: every
# ```sql block in it is run, in order, against the examples' database
# (examples/roles.sql, schema.sql, 5,000 customers of data.sql, policy.sql),
# and everything the extension installs is named in it.
#
# The line just before each ```sql fence says how to run the block:
#   <!-- readme-test -->                       as the superuser; must succeed
#   <!-- readme-test: as=ROLE -->              as ROLE (a connection as it if
#                                              it can log in, else SET ROLE)
#   <!-- readme-test: error=SQLSTATE -->       must fail with that SQLSTATE
#   <!-- readme-test: as=ROLE error=SQLSTATE -->
#   <!-- illustration -->                      not run (a template)
# A ```sql block without one fails.  A ```text block marked
# <!-- readme-test: output --> right after a block is what psql must print
# for it (aligned format, trailing blanks ignored).
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

pgg_new_cluster readme
pgg_start readme
pgg_psql readme -d postgres -c "CREATE DATABASE readme" >/dev/null
rd_setup() {
	pgg_psql readme -d readme -c "CREATE EXTENSION pii_guard" &&
	pgg_psql readme -d readme -f "$PGG_REPO/examples/roles.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock readme)" -p 5432 -U crm_dba -d readme \
		-f "$PGG_REPO/examples/schema.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock readme)" -p 5432 -U crm_dba -d readme \
		-v customers="${DEMO_CUSTOMERS:-5000}" -f "$PGG_REPO/examples/data.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock readme)" -p 5432 -U crm_dba -d readme \
		-f "$PGG_REPO/examples/policy.sql"
} >"$PGG_WORK/readme_setup.log" 2>&1
rd_setup || tail -20 "$PGG_WORK/readme_setup.log" | sed 's/^/  # /'
pgg_ok "the examples load" grep -vq ERROR "$PGG_WORK/readme_setup.log"

rd_log=$PGG_WORK/readme_blocks.log
/usr/bin/python3 - "$PGG_REPO/README.md" "$(pgg_sock readme)" \
	"$PGG_WORK/readme_output.log" >"$rd_log" 2>&1 <<'PY'
import re, subprocess, sys

readme, sock = sys.argv[1], sys.argv[2]
lines = open(readme, encoding="utf-8").read().split("\n")

def psql(user, sql, *flags):
    p = subprocess.run(["psql", "-X", *flags, "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                        "-P", "pager=off", "-P", "null=(null)", "-h", sock, "-p", "5432", "-U", user, "-d", "readme"],
                       input=sql, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr

def norm(text):
    out = [l.rstrip() for l in text.split("\n")]
    while out and out[-1] == "":
        out.pop()
    while out and out[0] == "":
        out.pop(0)
    return out

# the blocks: (fence line number, language, marker, body)
blocks, i = [], 0
while i < len(lines):
    m = re.match(r"^```(\w*)\s*$", lines[i])
    if m and m.group(1):
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        marker = lines[i - 1].strip() if i > 0 else ""
        blocks.append((i + 1, m.group(1), marker, "\n".join(lines[i + 1:j]) + "\n", j))
        i = j + 1
    elif m:
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        i = j + 1
    else:
        i += 1

rc, logins, _ = psql("postgres", "SELECT string_agg(rolname, ' ') FROM pg_roles WHERE rolcanlogin", "-tA")
logins = set(logins.split()) if rc == 0 else set()

fails = run = illustrations = 0
shown = open(sys.argv[3], "w", encoding="utf-8")     # what each block printed
for k, (line, lang, marker, body, end) in enumerate(blocks):
    if lang != "sql":
        continue
    if marker == "<!-- illustration -->":
        illustrations += 1
        continue
    m = re.match(r"^<!-- readme-test(?::((?:\s+[a-z]+=\S+)+))?\s*-->$", marker)
    if not m:
        print(f"not ok - README.md:{line}: a ```sql block without a readme-test or illustration marker")
        fails += 1
        continue
    opts = dict(o.split("=", 1) for o in (m.group(1) or "").split())
    role, state = opts.get("as"), opts.get("error")
    user, sql = "postgres", body
    if role and role in logins:
        user = role
    elif role:
        sql = f'SET ROLE "{role}";\n' + body
    rc, out, err = psql(user, sql)
    run += 1
    shown.write(f"== README.md:{line} as {user}\n{out}{err}")
    what = f"README.md:{line}" + (f" (as {role})" if role else "")
    if state:
        if rc == 0 or f"ERROR:  {state}:" not in err:
            print(f"not ok - {what}: expected SQLSTATE {state}, got: " + (err.strip() or "success"))
            fails += 1
            continue
    elif rc != 0:
        print(f"not ok - {what}: {err.strip()}")
        fails += 1
        continue
    # its output, if the README shows it
    if k + 1 < len(blocks):
        nline, nlang, nmarker, nbody, _ = blocks[k + 1]
        between = lines[end + 1:nline - 2]
        if nlang == "text" and nmarker == "<!-- readme-test: output -->" and all(not l.strip() for l in between):
            if norm(out) != norm(nbody):
                print(f"not ok - {what}: output differs from README.md:{nline}")
                print("   got:\n" + "\n".join("     " + l for l in norm(out)))
                fails += 1
                continue
    print(f"ok - {what}")

print(f"# {run} blocks run, {illustrations} illustrations, {fails} failed")

# completeness: everything the extension installs is named in the README
text = "\n".join(lines)
rc, out, err = psql("postgres", r"""
SELECT 'function ' || p.proname FROM pg_proc p
 WHERE p.pronamespace = 'pii_guard'::regnamespace AND p.proname NOT LIKE '\_%'
   AND p.prorettype <> 'trigger'::regtype
   -- the functions behind operators, type I/O and operator classes: the
   -- reference names the operators, types and index support instead
   AND NOT EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprcode = p.oid)
   AND NOT EXISTS (SELECT 1 FROM pg_type t WHERE p.oid IN (t.typinput, t.typoutput, t.typreceive, t.typsend))
   AND NOT EXISTS (SELECT 1 FROM pg_amproc a WHERE a.amproc = p.oid)
UNION SELECT 'relation ' || c.relname FROM pg_class c
 WHERE c.relnamespace = 'pii_guard'::regnamespace AND c.relkind IN ('r', 'v', 'p', 'm')
UNION SELECT 'type ' || t.typname FROM pg_type t
 WHERE t.typnamespace = 'pii_guard'::regnamespace AND t.typtype IN ('b', 'e', 'd') AND t.typelem = 0 AND t.typname NOT LIKE '\_%'
UNION SELECT 'setting ' || name FROM pg_settings WHERE name LIKE 'pii\_guard.%'
UNION SELECT 'role ' || rolname FROM pg_roles WHERE rolname LIKE 'pii\_guard\_%'
ORDER BY 1""", "-tA")
if rc != 0:
    print("not ok - the catalogue query: " + err.strip())
    fails += 1
missing = [o for o in out.split("\n") if o.strip() and not re.search(r"(?<!\w)" + re.escape(o.split()[1]) + r"(?!\w)", text)]
for o in missing:
    print(f"not ok - README.md does not name {o}")
fails += len(missing)
if not missing and rc == 0:
    print(f"ok - README.md names all {len(out.split(chr(10))) - 1} functions, tables, views, types, settings and roles")
sys.exit(1 if fails else 0)
PY
rd_rc=$?
grep '^not ok\|^   \|^     ' "$rd_log" | sed 's/^/  # /'
tail -2 "$rd_log" | sed 's/^/  # /'
pgg_is "every SQL block of README.md runs as it says, and it names everything installed" "$rd_rc" 0
