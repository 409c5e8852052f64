#!/usr/bin/python3
"""test/readme_blocks.py -- run README.md's ```sql blocks against a database
and compare the outputs the README shows.  Used by test/scenario/readme.sh
(every block and the catalogue check, on a fresh examples database) and
test/scenario/demo.sh (every block, on the database `make demo KEEP=1`
leaves behind).

  test/readme_blocks.py README SOCKET_DIR OUTPUT_LOG [--port N] [--dbname DB]
                        [--section TITLE] [--catalogue]

The line just before each ```sql fence says how to run the block:
  <!-- readme-test -->                       as the superuser; must succeed
  <!-- readme-test: as=ROLE -->              as ROLE (a connection as it if
                                             it can log in, else SET ROLE)
  <!-- readme-test: error=SQLSTATE -->       must fail with that SQLSTATE
  <!-- readme-test: as=ROLE error=SQLSTATE -->
  <!-- illustration -->                      not run (a template)
A ```sql block without one fails.  A ```text block marked
<!-- readme-test: output --> right after a block is what psql must print for
it (aligned format, trailing blanks ignored).

--section TITLE runs only the blocks under the "## TITLE" heading (up to the
next "## " heading).  --catalogue also checks that the README names every
function, table, view, type, setting and role the extension installs.

The superuser is "postgres".  Prints "ok - ..." / "not ok - ..." per block and
check, then a "# N blocks run ..." line; what each block printed goes to
OUTPUT_LOG.  Exit status 1 if anything failed.
"""
import argparse
import re
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("readme")
ap.add_argument("sock")
ap.add_argument("output_log")
ap.add_argument("--port", default="5432")
ap.add_argument("--dbname", default="readme")
ap.add_argument("--section")
ap.add_argument("--catalogue", action="store_true")
args = ap.parse_args()

lines = open(args.readme, encoding="utf-8").read().split("\n")


def psql(user, sql, *flags):
    p = subprocess.run(["psql", "-X", *flags, "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                        "-P", "pager=off", "-P", "null=(null)", "-h", args.sock, "-p", args.port,
                        "-U", user, "-d", args.dbname],
                       input=sql, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def norm(text):
    out = [l.rstrip() for l in text.split("\n")]
    while out and out[-1] == "":
        out.pop()
    while out and out[0] == "":
        out.pop(0)
    return out


# the lines to look at: the whole README, or one "## " section of it
first, last = 0, len(lines)
if args.section:
    heads = [i for i, l in enumerate(lines) if l.rstrip() == "## " + args.section]
    if len(heads) != 1:
        print(f"not ok - README.md has {len(heads)} sections headed '## {args.section}'")
        sys.exit(1)
    first = heads[0]
    last = next((i for i in range(first + 1, len(lines)) if lines[i].startswith("## ")), len(lines))

# the blocks: (fence line number, language, marker, body, closing fence index)
blocks, i = [], first
while i < last:
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

rc, logins, err = psql("postgres", "SELECT string_agg(rolname, ' ') FROM pg_roles WHERE rolcanlogin", "-tA")
if rc != 0:
    print(f"not ok - cannot connect to database {args.dbname} at {args.sock}: {err.strip()}")
    sys.exit(1)
logins = set(logins.split())

fails = run = illustrations = 0
shown = open(args.output_log, "w", encoding="utf-8")     # what each block printed
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

print(f"# {run} blocks run, {illustrations} illustrations, {fails} failed"
      + (f" (section '{args.section}')" if args.section else ""))
if run == 0:
    print("not ok - no block was run")
    fails += 1

# completeness: everything the extension installs is named in the README
if args.catalogue:
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
