// Drives stock jsforce against the Salesforce sandbox and prints one JSON object of step results.
//
// Configuration comes from the environment, as a user would give it: SF_LOGIN_URL, SF_CLIENT_ID,
// SF_CLIENT_SECRET, SF_USERNAME, SF_PASSWORD, SF_REFRESH_TOKEN, SF_JWT_KEY (PEM), SF_API_VERSION,
// and NODE_EXTRA_CA_CERTS for the sandbox's test CA. Each step records its outcome; the pytest
// side (test_jsforce.py) checks every value against the sandbox's own state.
import { createSign } from 'node:crypto';
import jsforce from 'jsforce';

const env = process.env;
const version = env.SF_API_VERSION;
const results = {};

async function step(name, fn) {
  try {
    results[name] = { ok: true, value: await fn() };
  } catch (err) {
    results[name] = { ok: false, error: `${err.name}: ${err.message}`, code: err.errorCode ?? null };
  }
}

function oauth2() {
  return new jsforce.OAuth2({
    loginUrl: env.SF_LOGIN_URL,
    clientId: env.SF_CLIENT_ID,
    clientSecret: env.SF_CLIENT_SECRET,
    redirectUri: 'http://localhost:1717/OauthRedirect',
  });
}

function jwtAssertion() {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const claims = {
    iss: env.SF_CLIENT_ID,
    sub: env.SF_USERNAME,
    aud: env.SF_LOGIN_URL,
    exp: Math.floor(Date.now() / 1000) + 180,
  };
  const unsigned = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64(claims)}`;
  const signature = createSign('RSA-SHA256').update(unsigned).sign(env.SF_JWT_KEY, 'base64url');
  return `${unsigned}.${signature}`;
}

const tokenShape = (t) => ({
  has_access_token: typeof t.access_token === 'string' && t.access_token.length > 0,
  instance_url: t.instance_url,
  id: t.id,
  token_type: t.token_type,
});

let conn;

await step('token_client_credentials', async () => {
  const token = await oauth2().requestToken({ grant_type: 'client_credentials' });
  conn = new jsforce.Connection({
    instanceUrl: token.instance_url,
    accessToken: token.access_token,
    version,
  });
  return tokenShape(token);
});

await step('token_refresh', async () => tokenShape(await oauth2().refreshToken(env.SF_REFRESH_TOKEN)));

await step('token_jwt_bearer', async () => {
  const jwtConn = new jsforce.Connection({ oauth2: oauth2(), version });
  const user = await jwtConn.authorize({
    grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
    assertion: jwtAssertion(),
  });
  return { user_id: user.id, organization_id: user.organizationId };
});

await step('login_oauth2_password', async () => {
  const pw = new jsforce.Connection({ oauth2: oauth2(), version });
  const user = await pw.login(env.SF_USERNAME, env.SF_PASSWORD);
  const identity = await pw.identity();
  return {
    user: { id: user.id, organizationId: user.organizationId, url: user.url },
    identity: {
      id: identity.id,
      user_id: identity.user_id,
      organization_id: identity.organization_id,
      username: identity.username,
      display_name: identity.display_name,
      active: identity.active,
      user_type: identity.user_type,
      urls_rest: identity.urls?.rest,
      urls_query: identity.urls?.query,
    },
  };
});

await step('login_soap', async () => {
  const soap = new jsforce.Connection({ loginUrl: env.SF_LOGIN_URL, version });
  const user = await soap.login(env.SF_USERNAME, env.SF_PASSWORD);
  const identity = await soap.identity();
  const count = await soap.query('SELECT COUNT() FROM Account');
  return {
    user: { id: user.id, organizationId: user.organizationId, url: user.url },
    instance_url: soap.instanceUrl,
    identity_username: identity.username,
    account_count: count.totalSize,
  };
});

await step('query_autofetch', async () => {
  const records = [];
  const query = conn
    .query('SELECT Id, Name, Amount__c FROM Invoice__c ORDER BY Name')
    .on('record', (r) => records.push(r.Id));
  await query.run({ autoFetch: true, maxFetch: 1000000 });
  return { totalSize: query.totalSize, ids: records };
});

await step('query_more', async () => {
  const pages = [];
  let page = await conn.query('SELECT Id FROM Invoice__c');
  pages.push(page.records.length);
  while (!page.done) {
    page = await conn.queryMore(page.nextRecordsUrl);
    pages.push(page.records.length);
  }
  return { totalSize: page.totalSize, pages };
});

await step('query_aggregates', async () => {
  const count = await conn.query('SELECT COUNT() FROM Account');
  const grouped = await conn.query(
    'SELECT Account__c, COUNT(Id) n, SUM(Amount__c) FROM Invoice__c GROUP BY Account__c ORDER BY Account__c',
  );
  const children = await conn.query(
    'SELECT Id, Name, (SELECT Id, Subject FROM Tasks), (SELECT Id FROM Invoices__r ORDER BY Name) ' +
      'FROM Account ORDER BY Name LIMIT 5',
  );
  const sub = (rel) =>
    rel === null ? null : { totalSize: rel.totalSize, done: rel.done, ids: rel.records.map((t) => t.Id) };
  return {
    count: count.totalSize,
    grouped: grouped.records.map((r) => ({
      Account__c: r.Account__c,
      n: r.n,
      total: r.expr0,
      type: r.attributes?.type,
    })),
    children: children.records.map((r) => ({ Id: r.Id, tasks: sub(r.Tasks), invoices: sub(r.Invoices__r) })),
  };
});

await step('describe', async () => {
  const account = await conn.sobject('Account').describe();
  const global = await conn.describeGlobal();
  const score = account.fields.find((f) => f.name === 'Risk_Score__c');
  return {
    name: account.name,
    keys: Object.keys(account),
    field_keys: Object.keys(score),
    child_relationships: account.childRelationships.map((c) => c.relationshipName),
    global_names: global.sobjects.map((s) => s.name),
    global_keys: Object.keys(global.sobjects[0]),
  };
});

await step('limits', async () => {
  const limits = await conn.limits();
  return { keys: Object.keys(limits), daily: limits.DailyApiRequests };
});

let accountIds = [];
await step('collections_update', async () => {
  const page = await conn.query('SELECT Id FROM Account ORDER BY Name LIMIT 3');
  accountIds = page.records.map((r) => r.Id);
  const saved = await conn
    .sobject('Account')
    .update(accountIds.map((Id, i) => ({ Id, Risk_Score__c: 11 + i })), { allOrNone: true });
  return saved;
});

let taskIds = [];
await step('collections_create', async () => {
  const owner = (await conn.query("SELECT Id FROM User WHERE IsActive = true LIMIT 1")).records[0].Id;
  const saved = await conn.sobject('Task').create(
    accountIds.map((WhatId, i) => ({
      WhatId,
      OwnerId: owner,
      Subject: `jsforce follow-up ${i}`,
      Risk_Task_Key__c: `jsforce-${i}`,
    })),
  );
  taskIds = saved.filter((r) => r.success).map((r) => r.id);
  return saved;
});

await step('collections_retrieve', async () => {
  const explicit = await conn.sobject('Account').retrieve(accountIds, { fields: ['Name', 'Risk_Score__c'] });
  const described = await conn.sobject('Task').retrieve(taskIds);
  return {
    explicit: explicit.map((r) => ({ Id: r.Id, Risk_Score__c: r.Risk_Score__c, type: r.attributes?.type })),
    described_subjects: described.map((r) => r.Subject),
  };
});

await step('collections_upsert', async () => {
  const saved = await conn.sobject('Task').upsert(
    [
      { Risk_Task_Key__c: 'jsforce-0', Subject: 'jsforce follow-up 0 (upserted)' },
      {
        Risk_Task_Key__c: 'jsforce-new',
        Subject: 'jsforce created by upsert',
        WhatId: accountIds[0],
        OwnerId: (await conn.query('SELECT OwnerId FROM Task WHERE Id = \'' + taskIds[0] + '\'')).records[0].OwnerId,
      },
    ],
    'Risk_Task_Key__c',
  );
  return saved;
});

await step('collections_delete', async () => {
  const created = await conn.query("SELECT Id FROM Task WHERE Risk_Task_Key__c LIKE 'jsforce-%'");
  const ids = created.records.map((r) => r.Id);
  return { ids, results: await conn.sobject('Task').destroy(ids) };
});

await step('bulk2_query', async () => {
  conn.bulk2.pollInterval = 200;
  conn.bulk2.pollTimeout = 60000;
  const stream = await conn.bulk2.query('SELECT Id, Name FROM Invoice__c');
  const ids = [];
  for await (const record of stream) ids.push(record.Id);
  return { ids };
});

await step('bulk2_ingest', async () => {
  const owner = (await conn.query('SELECT Id FROM User WHERE IsActive = true LIMIT 1')).records[0].Id;
  const lines = ['WhatId,OwnerId,Subject,Risk_Task_Key__c'];
  accountIds.forEach((id, i) => lines.push(`${id},${owner},Bulk follow-up ${i},bulk-${i}`));
  lines.push(`${accountIds[0]},${owner},${'x'.repeat(300)},bulk-too-long`);
  const job = conn.bulk2.createJob({ object: 'Task', operation: 'insert', lineEnding: 'LF' });
  await job.open();
  const contentUrl = job.jobInfo?.contentUrl ?? null;
  await job.uploadData(lines.join('\n') + '\n');
  await job.close();
  await job.poll(200, 60000);
  const all = await job.getAllResults();
  return {
    contentUrl,
    successful: all.successfulResults.map((r) => ({ id: r.sf__Id, created: r.sf__Created, key: r.Risk_Task_Key__c })),
    failed: all.failedResults.map((r) => ({ error: r.sf__Error, key: r.Risk_Task_Key__c })),
    unprocessed: all.unprocessedRecords.length,
  };
});

process.stdout.write(JSON.stringify(results));
