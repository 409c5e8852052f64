// test/clients/node_checks.js -- node-postgres (pg), pg-cursor and
// pg-copy-streams against the examples' masking view public.customers, as
// the seed roles.  Run by test/scenario/clients.sh:
//
//   node node_checks.js PART DATABASE
//
// PART: lookups | copy_in | export_copy | export_cursor | copy_view |
// introspection.  Each part gets a fresh copy of the examples' database
// (the day's export counters are per database and login role).
'use strict';

const { Readable } = require('stream');
const { pipeline } = require('stream/promises');
const Cursor = require('pg-cursor');
const { from: copyFrom, to: copyTo } = require('pg-copy-streams');
const {
  part, connect, describe, check, report, same, stored, exportUsage, done,
} = require('./lib');

const LIMIT_NAMED = /per statement|per 24 hours|export approvals have no rows left/;
const MASKED_PHONE = /^\d{3}\*{4}\d{4}$/;

// Customers to look up, as stored (crm_dba reads the base table).
async function truth(dba, ids) {
  return (await dba.query(
    `SELECT id, name, pii_guard.decrypt(phone) AS phone FROM public_pii.customers
      WHERE id = ANY ($1::bigint[]) ORDER BY id`, [ids])).rows;
}

// COPY ... TO STDOUT through pg-copy-streams: what arrived, and the error.
async function copyOut(client, sql) {
  const chunks = [];
  let error = null;
  try {
    const stream = client.query(copyTo(sql));
    stream.on('data', (c) => chunks.push(c));
    await new Promise((resolve, reject) => {
      stream.on('end', resolve);
      stream.on('error', reject);
    });
  } catch (e) {
    error = e;
  }
  const text = Buffer.concat(chunks).toString('utf8');
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
  return { text, lines, error };
}

// 54P01 with a detail naming the limit (and, if given, the row refused).
// pg-copy-streams 7 drops the CopyData messages it reads in the same chunk
// as the ErrorResponse, so the rows the server sent before the refusal
// need not reach the program: at most `rows` must, all of them masked.
function refusedAtLimit(r, rows, detail = LIMIT_NAMED, row = null) {
  if (!r.error) return `no error; ${r.lines.length} rows arrived`;
  const d = r.error.detail || '';
  if (r.error.code !== '54P01' || !detail.test(d)) return describe(r.error);
  if (row !== null && !d.includes(`this would be row ${row}`)) return `refused elsewhere: ${describe(r.error)}`;
  if (r.lines.length > rows) return `${r.lines.length} rows arrived before the error, more than ${rows}`;
  return true;
}

async function stillUsable(client) {
  const r = await client.query('SELECT 1 AS one');
  return same(r.rows, [{ one: 1 }]);
}

//---------------------------------------------------------------------------
// 1. support_dan looks customers up by phone number, with parameters.
//---------------------------------------------------------------------------
async function lookups() {
  const dba = await connect('crm_dba');
  const ids = [1042, 2, 3, 5, 7, 11, 13, 4242, 4999];
  const want = await truth(dba, ids);
  const c1042 = want.find((r) => r.id === '1042');
  const dan = await connect('support_dan');
  const before = await exportUsage(dba, 'support_dan');
  let found = 0;

  await check("node-pg, support_dan: client.query('SELECT id, name, phone FROM customers WHERE phone = $1', [phone]) finds customer 1042", async () => {
    const r = await dan.query('SELECT id, name, phone FROM customers WHERE phone = $1', [c1042.phone]);
    found += r.rowCount;
    return same(r.rows, [c1042]);
  });
  await check(`node-pg, support_dan: a named prepared statement, executed for ${ids.length} customers (generic plan after the fifth), finds each`, async () => {
    const got = [];
    for (const c of want) {
      const r = await dan.query({
        name: 'customer_by_phone',
        text: 'SELECT id, name, phone FROM customers WHERE phone = $1',
        values: [c.phone],
      });
      found += r.rowCount;
      got.push(...r.rows);
    }
    return same(got, want);
  });
  await check('node-pg, support_dan: WHERE phone = $1::varchar finds customer 1042', async () => {
    const r = await dan.query('SELECT id, name, phone FROM customers WHERE phone = $1::varchar', [c1042.phone]);
    found += r.rowCount;
    return same(r.rows, [c1042]);
  });
  const three = want.slice(0, 3);
  await check('node-pg, support_dan: WHERE phone = ANY($1) with an array of 3 phones finds the 3 customers', async () => {
    const r = await dan.query('SELECT id, name, phone FROM customers WHERE phone = ANY($1) ORDER BY id',
      [three.map((c) => c.phone)]);
    found += r.rowCount;
    return same(r.rows, three);
  });
  await check('node-pg, support_dan: WHERE phone IN ($1, $2, $3) finds the 3 customers', async () => {
    const r = await dan.query('SELECT id, name, phone FROM customers WHERE phone IN ($1, $2, $3) ORDER BY id',
      three.map((c) => c.phone));
    found += r.rowCount;
    return same(r.rows, three);
  });
  await check('node-pg, support_dan: a phone number no customer has finds nothing (and is not refused)', async () => {
    const r = await dan.query('SELECT id, name, phone FROM customers WHERE phone = $1', ['10999999999']);
    return same(r.rows, []);
  });
  await check(`node-pg, support_dan: the day's export count grew by the customers found (${found}), not by the rows scanned`, async () => {
    const used = (await exportUsage(dba, 'support_dan')) - before;
    return used === found ? true : `it grew by ${used}`;
  });
  await dan.end();
  await dba.end();
}

//---------------------------------------------------------------------------
// 3. sales_bob imports 150 customers with COPY ... FROM STDIN.
//---------------------------------------------------------------------------
async function copyIn() {
  const dba = await connect('crm_dba');
  const maxId = (await dba.query('SELECT max(id) AS m FROM public_pii.customers')).rows[0].m;
  const rows = [];
  for (let i = 1; i <= 150; i++) {
    rows.push({
      name: `导入客户${i}`,
      phone: `100${String(i).padStart(8, '0')}`,
      email: `import${i}@example.com`,
    });
  }
  const bob = await connect('sales_bob');
  const before = await exportUsage(dba, 'sales_bob');
  let copied = null;
  await check('node-pg, sales_bob: COPY customers (name, phone, email, sales_owner) FROM STDIN (pg-copy-streams), 150 rows, succeeds', async () => {
    const stream = bob.query(copyFrom('COPY customers (name, phone, email, sales_owner) FROM STDIN'));
    await pipeline(Readable.from(rows.map((r) => `${r.name}\t${r.phone}\t${r.email}\tsales_bob\n`)), stream);
    copied = stream.rowCount;
    return copied === 150 ? true : `COPY reported ${copied} rows`;
  });
  await check('node-pg, sales_bob: the COPY counted nothing against his export limits (a write)', async () => {
    const used = (await exportUsage(dba, 'sales_bob')) - before;
    return used === 0 ? true : `his day's count grew by ${used}`;
  });
  const got = (await dba.query(
    `SELECT name, pii_guard.decrypt(phone) AS phone, email, sales_owner::text AS sales_owner,
            birth_date, national_id, bank_card, address, channel, campaign, service_tier,
            deal_amount, sales_notes, created_at IS NOT NULL AS created
       FROM public_pii.customers WHERE id > $1 ORDER BY id`, [maxId])).rows;
  report('stored: the 150 rows, with the names, phones and e-mails given, owned by sales_bob',
    got.length === 150 && got.every((g, i) => g.name === rows[i].name && g.phone === rows[i].phone
      && g.email === rows[i].email && g.sales_owner === 'sales_bob'),
    `${got.length} rows after id ${maxId}; first: ${JSON.stringify(got[0])}`);
  report('stored: the columns not given have their defaults (service_tier standard, created_at set, the rest NULL)',
    got.length === 150 && got.every((g) => g.service_tier === 'standard' && g.created
      && [g.birth_date, g.national_id, g.bank_card, g.address, g.channel, g.campaign, g.deal_amount, g.sales_notes]
        .every((v) => v === null)),
    `first: ${JSON.stringify(got[0])}`);
  await check('node-pg, sales_bob reads them back: count(*) of the new ids is 150', async () => {
    const r = await bob.query('SELECT count(*)::int AS n FROM customers WHERE id > $1', [maxId]);
    return same(r.rows, [{ n: 150 }]);
  });
  await check('node-pg, sales_bob reads them back: the first 20 in clear (name, phone, email)', async () => {
    const r = await bob.query('SELECT name, phone, email FROM customers WHERE id > $1 ORDER BY id LIMIT 20', [maxId]);
    return same(r.rows, rows.slice(0, 20));
  });
  await bob.end();
  await dba.end();
}

//---------------------------------------------------------------------------
// 6. intern_fay exports: COPY (SELECT ...) TO STDOUT, up to her limits and
//    beyond; an approval; the connection after a refusal.
//---------------------------------------------------------------------------
const EXPORT = 'COPY (SELECT id, name, phone FROM customers ORDER BY id) TO STDOUT';

async function exportCopy() {
  const fay = await connect('intern_fay');
  let r = await copyOut(fay, EXPORT);
  report('node-pg, intern_fay: COPY (SELECT id, name, phone ...) TO STDOUT (pg-copy-streams): refused at row 21 with 54P01 naming the limit',
    refusedAtLimit(r, 20, LIMIT_NAMED, 21) === true, refusedAtLimit(r, 20, LIMIT_NAMED, 21));
  if (r.error) console.log(`    # ${describe(r.error)}`);
  report('node-pg, intern_fay: what reached her before the refusal is masked',
    r.lines.every((l) => MASKED_PHONE.test(l.split('\t')[2])), r.lines.slice(0, 3).join('\n'));
  console.log(`    # (information) pg-copy-streams handed over ${r.lines.length} of the rows sent before the refusal`);
  await check('node-pg, intern_fay: the same connection is usable after the refusal (SELECT 1)', () => stillUsable(fay));
  r = await copyOut(fay, EXPORT);
  report("node-pg, intern_fay: exporting again the same day: 54P01 at the first row, naming the day's limit",
    refusedAtLimit(r, 0, /per 24 hours/) === true, refusedAtLimit(r, 0, /per 24 hours/));

  const eve = await connect('mgr_eve');
  let grant = null;
  await check('node-pg, mgr_eve approves 100 rows for intern_fay (pii_guard.approve_export)', async () => {
    grant = (await eve.query(
      "SELECT pii_guard.approve_export('intern_fay', 100, now() + interval '1 hour', 'clients.sh: a mailing') AS id")).rows[0].id;
    return grant !== null;
  });
  r = await copyOut(fay, 'COPY (SELECT id, name, phone FROM customers ORDER BY id LIMIT 100) TO STDOUT');
  report('node-pg, intern_fay: with the approval, COPY of 100 rows succeeds',
    !r.error && r.lines.length === 100, `${r.lines.length} rows; ${describe(r.error)}`);
  r = await copyOut(fay, 'COPY (SELECT id, name, phone FROM customers ORDER BY id LIMIT 1) TO STDOUT');
  report('node-pg, intern_fay: the approval used up, the next row is refused: 54P01 saying so',
    refusedAtLimit(r, 0, /approvals have no rows left/) === true, refusedAtLimit(r, 0, /approvals have no rows left/));
  await check('node-pg, intern_fay: the same connection is still usable', () => stillUsable(fay));
  await eve.end();
  await fay.end();
}

//---------------------------------------------------------------------------
// 6. intern_fay reads through a cursor, 10 rows at a time (pg-cursor).
//---------------------------------------------------------------------------
async function exportCursor() {
  const fay = await connect('intern_fay');
  const got = [];
  let error = null;
  await fay.query('BEGIN');
  const cursor = fay.query(new Cursor('SELECT id, name, phone FROM customers ORDER BY id'));
  try {
    for (let i = 0; i < 5; i++) {
      const rows = await cursor.read(10);
      got.push(...rows);
      if (rows.length === 0) break;
    }
  } catch (e) {
    error = e;
  }
  report('node-pg, intern_fay: pg-cursor, 10 rows a read: 20 rows arrive, then 54P01 naming the limit',
    got.length === 20 && error && error.code === '54P01' && LIMIT_NAMED.test(error.detail || ''),
    `${got.length} rows; ${describe(error)}`);
  if (error) console.log(`    # ${describe(error)}`);
  report('node-pg, intern_fay: the rows that arrived are masked',
    got.length > 0 && got.every((row) => MASKED_PHONE.test(row.phone)), JSON.stringify(got.slice(0, 2)));
  await check('node-pg, intern_fay: ROLLBACK, then the same connection is usable (SELECT 1)', async () => {
    try {
      await cursor.close();
    } catch (e) {
      // (the portal went with the error)
    }
    await fay.query('ROLLBACK');
    return stillUsable(fay);
  });
  await fay.end();
}

//---------------------------------------------------------------------------
// 6. COPY customers TO STDOUT: the view's name, not a SELECT.
//---------------------------------------------------------------------------
async function copyView() {
  const dba = await connect('crm_dba');
  const c1042 = (await stored(dba, [1042]))[0];
  const eve = await connect('mgr_eve');
  let named = await copyOut(eve, 'COPY customers TO STDOUT');
  let select = await copyOut(eve, 'COPY (SELECT * FROM customers) TO STDOUT');
  report('node-pg, mgr_eve: COPY customers TO STDOUT succeeds, 5000 rows',
    !named.error && named.lines.length === 5000, `${named.lines.length} rows; ${describe(named.error)}`);
  report('node-pg, mgr_eve: ... the same as COPY (SELECT * FROM customers) TO STDOUT',
    !named.error && !select.error && named.text === select.text,
    `${named.lines.length} and ${select.lines.length} rows; ${describe(select.error)}`);
  const line = named.lines.find((l) => l.startsWith('1042\t'));
  const f = line ? line.split('\t') : [];
  report('node-pg, mgr_eve: ... customer 1042 with name and phone in clear, national_id masked',
    f[1] === c1042.name && f[3] === c1042.phone && /^\d{6}\*{8}[0-9X]{4}$/.test(f[4] || ''),
    line || 'no line for customer 1042');
  named = await copyOut(eve, 'COPY customers (id, phone) TO STDOUT');
  select = await copyOut(eve, 'COPY (SELECT id, phone FROM customers) TO STDOUT');
  report('node-pg, mgr_eve: COPY customers (id, phone) TO STDOUT: the same as COPY (SELECT id, phone ...)',
    !named.error && !select.error && named.text === select.text && named.lines.length === 5000,
    `${named.lines.length} rows; ${describe(named.error)}`);

  const amy = await connect('mkt_amy');
  named = await copyOut(amy, 'COPY customers TO STDOUT');
  select = await copyOut(amy, 'COPY (SELECT * FROM customers) TO STDOUT');
  report('node-pg, mkt_amy: COPY customers TO STDOUT: the same as COPY (SELECT * ...), contacts hidden (\\N), channels clear',
    !named.error && named.text === select.text && named.lines.length === 5000
      && named.lines.every((l) => { const g = l.split('\t'); return g[1] === '\\N' && g[3] === '\\N' && g[8] !== '\\N'; }),
    `${named.lines.length} rows; ${describe(named.error)}; first: ${named.lines[0]}`);

  const fay = await connect('intern_fay');
  named = await copyOut(fay, 'COPY customers TO STDOUT');
  report('node-pg, intern_fay: COPY customers TO STDOUT keeps to her limits: refused at row 21 with 54P01, masked before',
    refusedAtLimit(named, 20, LIMIT_NAMED, 21) === true && named.lines.every((l) => MASKED_PHONE.test(l.split('\t')[3])),
    refusedAtLimit(named, 20, LIMIT_NAMED, 21));
  await check('node-pg, intern_fay: the same connection is usable after it', () => stillUsable(fay));
  await fay.end();
  await amy.end();
  await eve.end();
  await dba.end();
}

//---------------------------------------------------------------------------
// 7. What an ORM's introspection sees (information_schema).
//---------------------------------------------------------------------------
async function introspection() {
  for (const role of ['mgr_eve', 'sales_bob', 'support_dan']) {
    const c = await connect(role);
    await check(`node-pg, ${role}: information_schema.tables shows public.customers, is_insertable_into YES`, async () => {
      const r = await c.query(`SELECT table_type, is_insertable_into FROM information_schema.tables
                                WHERE table_schema = 'public' AND table_name = 'customers'`);
      return same(r.rows, [{ table_type: 'VIEW', is_insertable_into: 'YES' }]);
    });
    await check(`node-pg, ${role}: information_schema.views: is_insertable_into and is_updatable YES`, async () => {
      const r = await c.query(`SELECT is_insertable_into, is_updatable FROM information_schema.views
                                WHERE table_schema = 'public' AND table_name = 'customers'`);
      return same(r.rows, [{ is_insertable_into: 'YES', is_updatable: 'YES' }]);
    });
    if (role === 'mgr_eve') {
      const cols = await c.query(`SELECT string_agg(column_name, ' ' ORDER BY ordinal_position) AS c
                                    FROM information_schema.columns
                                   WHERE table_schema = 'public' AND table_name = 'customers' AND is_updatable = 'NO'`);
      console.log(`    # (information) information_schema.columns.is_updatable is NO for: ${cols.rows[0].c || '(none)'}`);
      const pk = await c.query(`SELECT count(*)::int AS n FROM information_schema.table_constraints
                                 WHERE table_schema = 'public' AND table_name = 'customers'
                                   AND constraint_type = 'PRIMARY KEY'`);
      console.log(`    # (information) information_schema.table_constraints: ${pk.rows[0].n} PRIMARY KEY for public.customers`);
    }
    await c.end();
  }
}

const parts = {
  lookups, copy_in: copyIn, export_copy: exportCopy, export_cursor: exportCursor,
  copy_view: copyView, introspection,
};

(async () => {
  if (!parts[part]) throw new Error(`unknown part ${part}`);
  await parts[part]();
  done();
})().catch((e) => {
  console.log(`  not ok - ${part}: the program failed: ${describe(e)}`);
  process.exit(2);
});
