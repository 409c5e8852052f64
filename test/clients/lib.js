// test/clients/lib.js -- what the JavaScript client programs share: a
// connection as a role of the examples, checks printed in the scenarios'
// style ("  ok - ..." / "  not ok - ..."), and the truth about a row as the
// tables' owner reads it from the base table.
//
// The server is the one PGHOST/PGPORT name (test/lib.sh's pgg_env: a unix
// socket directory, trust authentication).
'use strict';

const pg = require('pg');

// The database and what the program does come from the command line.
const [, , part, database] = process.argv;

// A program that hangs (a client waiting for an answer that never comes)
// fails instead; clients.sh also runs it under timeout(1).
const watchdog = setTimeout(() => {
  console.log(`  not ok - ${part}: timed out after 100 s`);
  process.exit(3);
}, 100000);
watchdog.unref();

async function connect(role, db = database) {
  const client = new pg.Client({
    user: role,
    database: db,
    application_name: `clients.sh ${part}`,
    connectionTimeoutMillis: 10000,
    statement_timeout: 60000,
  });
  // An error the server sends while no query is running (a terminated
  // session) must not crash the program.
  client.on('error', (e) => console.log(`    # ${role}: connection error: ${e.message}`));
  await client.connect();
  return client;
}

// "54P01 pii_guard export limit exceeded (The limit is ...)"
function describe(e) {
  if (!e) return 'no error';
  let s = e.code ? `${e.code} ${e.message}` : String(e.message || e);
  if (e.detail) s += ` (${e.detail})`;
  return s;
}

let failures = 0;

function report(desc, pass, why) {
  if (pass) {
    console.log(`  ok - ${desc}`);
  } else {
    failures++;
    console.log(`  not ok - ${desc}`);
    if (why) for (const line of String(why).split('\n')) console.log(`    # ${line.slice(0, 400)}`);
  }
  return pass;
}

// check(desc, async () => { ...; return true | 'why not' })
// An exception is a failure, shown with its SQLSTATE.
async function check(desc, fn) {
  try {
    const r = await fn();
    return report(desc, r === true, r === true ? null : r);
  } catch (e) {
    return report(desc, false, describe(e));
  }
}

// Expect fn to fail with SQLSTATE state; returns the error (or null).
async function refusal(fn) {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  return null;
}

function short(s, limit = 300) {
  return s.length <= limit ? s : `${s.slice(0, limit)} ...`;
}

function same(got, want) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  return g === w ? true : `got:      ${short(g)}\nexpected: ${short(w)}`;
}

// A customer as stored, plaintexts decrypted (as crm_dba: the owner, a
// member of pii_guard_admin), and the envelopes of the encrypted columns.
const STORED = `
  SELECT id, name, birth_date::text, pii_guard.decrypt(phone) AS phone,
         pii_guard.decrypt(national_id) AS national_id, pii_guard.decrypt(bank_card) AS bank_card,
         email, address, channel, campaign, service_tier, deal_amount::text, sales_notes,
         sales_owner::text, created_at::text
    FROM public_pii.customers WHERE id = ANY ($1::bigint[]) ORDER BY id`;
const ENVELOPES = `
  SELECT id, phone::text, national_id::text, bank_card::text
    FROM public_pii.customers WHERE id = ANY ($1::bigint[]) ORDER BY id`;

async function stored(dba, ids) {
  return (await dba.query(STORED, [ids])).rows;
}
async function envelopes(dba, ids) {
  return (await dba.query(ENVELOPES, [ids])).rows;
}

// Compare two stored rows: the columns that differ.
function changed(before, after) {
  return Object.keys(before).filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
}

async function exportUsage(dba, role) {
  return Number((await dba.query('SELECT pii_guard.export_usage($1) AS n', [role])).rows[0].n);
}

function done() {
  clearTimeout(watchdog);
  // Exit status 0: the checks ran (their failures are in the output);
  // clients.sh takes any other status for a broken program.
  process.exitCode = 0;
}

module.exports = {
  part, database, connect, describe, check, report, refusal, same,
  stored, envelopes, changed, exportUsage, done, failures: () => failures,
};
