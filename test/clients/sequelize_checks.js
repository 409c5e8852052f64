// test/clients/sequelize_checks.js -- Sequelize (with pg) on the masking
// view public.customers: a model whose primary key is id, instance.save(),
// Model.update(), Model.upsert() and the ORM's introspection, as the seed
// roles.  Run by test/scenario/clients.sh:
//
//   node sequelize_checks.js all DATABASE
'use strict';

const { Sequelize, DataTypes } = require('sequelize');
const {
  database, connect, describe, check, same, stored, envelopes, changed, done, part,
} = require('./lib');

// The SQL Sequelize sent, per connection (shown when a check fails).
function open(role) {
  const sent = [];
  const sequelize = new Sequelize(database, role, null, {
    dialect: 'postgres',
    host: process.env.PGHOST,
    port: Number(process.env.PGPORT || 5432),
    logging: (sql) => sent.push(sql.replace(/^Executing \(default\): /, '')),
    pool: { max: 1 },
    dialectOptions: { application_name: 'clients.sh sequelize', statement_timeout: 60000 },
  });
  const Customer = sequelize.define('Customer', {
    id: { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true },
    name: { type: DataTypes.TEXT, allowNull: false },
    birth_date: DataTypes.DATEONLY,
    phone: DataTypes.TEXT,
    national_id: DataTypes.TEXT,
    bank_card: DataTypes.TEXT,
    email: DataTypes.TEXT,
    address: DataTypes.TEXT,
    channel: DataTypes.TEXT,
    campaign: DataTypes.TEXT,
    service_tier: DataTypes.TEXT,
    deal_amount: DataTypes.DECIMAL(12, 2),
    sales_notes: DataTypes.TEXT,
    sales_owner: DataTypes.TEXT,
    created_at: DataTypes.DATE,
  }, { tableName: 'customers', timestamps: false });
  return { sequelize, Customer, sent };
}

// Run fn (which writes customer id as role), then compare the stored row:
// exactly the columns in `want` changed, to those values; the envelopes of
// the encrypted columns not in `want` are the same bytes.
async function writes(dba, session, id, want, fn) {
  const before = (await stored(dba, [id]))[0];
  const envBefore = (await envelopes(dba, [id]))[0];
  const mark = session.sent.length;
  try {
    await fn();
  } catch (e) {
    return `${describe(e.original || e)}\nsent: ${session.sent.slice(mark).join('\nsent: ')}`;
  }
  const after = (await stored(dba, [id]))[0];
  const envAfter = (await envelopes(dba, [id]))[0];
  const diff = changed(before, after);
  const wantCols = Object.keys(want).sort();
  const why = [];
  if (JSON.stringify(diff.sort()) !== JSON.stringify(wantCols)) {
    why.push(`changed: ${diff.join(', ') || 'nothing'}; expected: ${wantCols.join(', ')}`);
    for (const k of diff) why.push(`  ${k}: ${JSON.stringify(before[k])} -> ${JSON.stringify(after[k])}`);
  }
  for (const [k, v] of Object.entries(want)) {
    if (after[k] !== v) why.push(`${k} is ${JSON.stringify(after[k])}, not ${JSON.stringify(v)}`);
  }
  const rewritten = ['phone', 'national_id', 'bank_card']
    .filter((k) => !diff.includes(k) && envBefore[k] !== envAfter[k]);
  if (rewritten.length) why.push(`rewritten (new envelope, same plaintext): ${rewritten.join(', ')}`);
  if (why.length) why.push(`sent: ${session.sent.slice(mark).join('\nsent: ')}`);
  return why.length ? why.join('\n') : true;
}

async function main() {
  const dba = await connect('crm_dba');
  const dan = open('support_dan');
  const eve = open('mgr_eve');

  // 5. instance.save() after changing one field.
  await check('Sequelize, support_dan: findByPk(1043), change address, save(): only address changes', () =>
    writes(dba, dan, 1043, { address: '上海市浦东新区世纪大道100号 (sequelize save)' }, async () => {
      const c = await dan.Customer.findByPk(1043);
      c.address = '上海市浦东新区世纪大道100号 (sequelize save)';
      await c.save();
    }));
  await check('Sequelize, support_dan: findByPk(1044), change phone, save(): the new phone is written, nothing else', () =>
    writes(dba, dan, 1044, { phone: '10900001044' }, async () => {
      const c = await dan.Customer.findByPk(1044);
      c.phone = '10900001044';
      await c.save();
    }));
  await check("Sequelize, support_dan: Model.update({address}, {where: {id}}): only address changes", () =>
    writes(dba, dan, 1045, { address: '北京市海淀区中关村大街1号 (sequelize update)' }, async () => {
      const [n] = await dan.Customer.update({ address: '北京市海淀区中关村大街1号 (sequelize update)' },
        { where: { id: 1045 } });
      if (n !== 1) throw new Error(`update reported ${n} rows`);
    }));
  // A form that shows the whole record and posts it all back, one field
  // edited: every value the role was shown (masked, hidden) goes back.
  await check('Sequelize, support_dan: Model.update() with the whole record as shown, address edited: only address changes', () =>
    writes(dba, dan, 1046, { address: '广州市天河区体育西路2号 (sequelize form)' }, async () => {
      const shown = (await dan.Customer.findByPk(1046)).get({ plain: true });
      const [n] = await dan.Customer.update({ ...shown, address: '广州市天河区体育西路2号 (sequelize form)' },
        { where: { id: 1046 } });
      if (n !== 1) throw new Error(`update reported ${n} rows`);
    }));

  // 4. Model.upsert(): INSERT ... ON CONFLICT ("id") DO UPDATE.
  await check('Sequelize, mgr_eve: Model.upsert() of customer 1047 with its name as shown and a new address: only address changes', () =>
    writes(dba, eve, 1047, { address: '深圳市南山区科技园3号 (sequelize upsert)' }, async () => {
      const shown = await eve.Customer.findByPk(1047);
      await eve.Customer.upsert({ id: 1047, name: shown.name, address: '深圳市南山区科技园3号 (sequelize upsert)' });
    }));
  await check('Sequelize, mgr_eve: Model.upsert() of a new customer inserts it', async () => {
    const mark = eve.sent.length;
    try {
      await eve.Customer.upsert({ id: 900001, name: '新客户', phone: '10900900001', sales_owner: 'sales_bob' });
    } catch (e) {
      return `${describe(e.original || e)}\nsent: ${eve.sent.slice(mark).join('\nsent: ')}`;
    }
    return same(await stored(dba, [900001]).then((r) => r.map((c) => [c.name, c.phone, c.service_tier])),
      [['新客户', '10900900001', 'standard']]);
  });

  // 7. Introspection (information).
  try {
    const desc = await eve.sequelize.getQueryInterface().describeTable('customers');
    const pk = Object.keys(desc).filter((k) => desc[k].primaryKey);
    console.log(`    # (information) Sequelize describeTable('customers'): ${Object.keys(desc).length} columns, primary key: ${pk.join(', ') || 'none found'}`);
    const tables = await eve.sequelize.getQueryInterface().showAllTables();
    console.log(`    # (information) Sequelize showAllTables() lists customers: ${tables.includes('customers') ? 'yes' : 'no'}`);
  } catch (e) {
    console.log(`    # (information) Sequelize describeTable('customers') failed: ${describe(e.original || e)}`);
  }

  await dan.sequelize.close();
  await eve.sequelize.close();
  await dba.end();
}

(async () => {
  if (part !== 'all') throw new Error(`unknown part ${part}`);
  await main();
  done();
})().catch((e) => {
  console.log(`  not ok - sequelize: the program failed: ${describe(e)}`);
  process.exit(2);
});
