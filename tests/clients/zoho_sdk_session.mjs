// Drives Zoho's Node SDK (@zohocrm/nodejs-sdk-8.0, unchanged) against the Zoho sandbox; prints JSON.
//
// Configuration from the environment, as a user gives it: ZOHO_API_URL, ZOHO_TOKEN_URL,
// ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN, ZOHO_WORK_DIR (token file, field cache,
// logs, the bulk-read ZIP), ZOHO_ACCOUNT_ID (the account to update and attach a Task to), and
// NODE_EXTRA_CA_CERTS for the sandbox's test CA. test_zoho_node_sdk.py checks each step.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ZOHOCRMSDK from '@zohocrm/nodejs-sdk-8.0';

const env = process.env;
const Z = ZOHOCRMSDK;
const results = {};

async function step(name, fn) {
  try {
    results[name] = { ok: true, value: await fn() };
  } catch (err) {
    results[name] = { ok: false, error: String(err?.message ?? err), detail: JSON.stringify(err?.details ?? null) };
  }
}

const describeError = (object) => ({
  status: object.getStatus?.()?.getValue?.(),
  code: object.getCode?.()?.getValue?.(),
  message: object.getMessage?.()?.getValue?.() ?? object.getMessage?.(),
  details: Object.fromEntries(object.getDetails?.() ?? []),
});

async function expect(response, wrapperClass) {
  if (response === null || response === undefined) throw new Error('no response');
  // For file downloads SDK 2.0.0 hands back a Promise of the wrapper (its Downloader's
  // getWrappedResponse does not await getResponse); awaiting is a no-op for the others.
  const object = await response.getObject();
  if (object instanceof wrapperClass) return object;
  throw new Error(`HTTP ${response.getStatusCode()} ${object?.constructor?.name}: ${JSON.stringify(describeError(object))}`);
}

await step('initialize', async () => {
  const environment = new Z.Environment(env.ZOHO_API_URL, env.ZOHO_TOKEN_URL, env.ZOHO_API_URL);
  const token = new Z.OAuthBuilder()
    .clientId(env.ZOHO_CLIENT_ID)
    .clientSecret(env.ZOHO_CLIENT_SECRET)
    .refreshToken(env.ZOHO_REFRESH_TOKEN)
    .build();
  const logger = new Z.LogBuilder().level(Z.Levels.INFO).filePath(join(env.ZOHO_WORK_DIR, 'sdk.log')).build();
  const sdkConfig = new Z.SDKConfigBuilder().pickListValidation(false).autoRefreshFields(false).build();
  await (await new Z.InitializeBuilder())
    .environment(environment)
    .token(token)
    .store(new Z.FileStore(join(env.ZOHO_WORK_DIR, 'sdk_tokens.txt')))
    .SDKConfig(sdkConfig)
    .resourcePath(env.ZOHO_WORK_DIR)
    .logger(logger)
    .initialize();
  return true;
});

await step('records_paged', async () => {
  const operations = new Z.Record.RecordOperations('Invoices');
  const ids = [];
  let page = 1;
  let pageToken = null;
  const calls = [];
  for (;;) {
    const params = new Z.ParameterMap();
    await params.add(Z.Record.GetRecordsParam.FIELDS, 'Subject,Account_Name,Grand_Total,Modified_Time');
    await params.add(Z.Record.GetRecordsParam.PER_PAGE, 200);
    if (pageToken) await params.add(Z.Record.GetRecordsParam.PAGE_TOKEN, pageToken);
    else await params.add(Z.Record.GetRecordsParam.PAGE, page);
    const wrapper = await expect(await operations.getRecords(params, new Z.HeaderMap()), Z.Record.ResponseWrapper);
    const records = wrapper.getData();
    for (const record of records) ids.push(String(record.getId()));
    calls.push(pageToken ? 'token' : 'page');
    const info = wrapper.getInfo();
    if (!info.getMoreRecords()) break;
    // Zoho serves `page` up to 2,000 records; past that only page_token (v8 Get Records).
    if (page * 200 >= 2000) pageToken = info.getNextPageToken();
    page += 1;
  }
  return { ids, calls };
});

await step('update_account', async () => {
  const record = new Z.Record.Record();
  record.setId(BigInt(env.ZOHO_ACCOUNT_ID));
  record.addKeyValue('Risk_Score', 61.5);
  record.addKeyValue('Risk_Reasons', 'Node SDK: two invoices 60+ days overdue');
  const body = new Z.Record.BodyWrapper();
  body.setData([record]);
  body.setTrigger([]);
  const wrapper = await expect(
    await new Z.Record.RecordOperations('Accounts').updateRecords(body, new Z.HeaderMap()),
    Z.Record.ActionWrapper,
  );
  return wrapper.getData().map((r) =>
    r instanceof Z.Record.SuccessResponse
      ? { status: r.getStatus().getValue(), code: r.getCode().getValue(), id: String(r.getDetails().get('id')) }
      : describeError(r),
  );
});

await step('create_task', async () => {
  const what = new Z.Record.Record();
  what.setId(BigInt(env.ZOHO_ACCOUNT_ID));
  const task = new Z.Record.Record();
  task.addKeyValue('Subject', 'Node SDK follow-up');
  task.addKeyValue('What_Id', what);
  task.addKeyValue('$se_module', 'Accounts');
  task.addKeyValue('Status', new Z.Choice('Not Started'));
  const body = new Z.Record.BodyWrapper();
  body.setData([task]);
  body.setTrigger([]);
  const wrapper = await expect(
    await new Z.Record.RecordOperations('Tasks').createRecords(body, new Z.HeaderMap()),
    Z.Record.ActionWrapper,
  );
  return wrapper.getData().map((r) =>
    r instanceof Z.Record.SuccessResponse
      ? { status: r.getStatus().getValue(), code: r.getCode().getValue(), id: String(r.getDetails().get('id')) }
      : describeError(r),
  );
});

await step('coql', async () => {
  const body = new Z.Coql.BodyWrapper();
  body.setSelectQuery(
    `select Subject, Grand_Total from Invoices where Account_Name = '${env.ZOHO_ACCOUNT_ID}' order by Subject asc limit 200`,
  );
  const wrapper = await expect(await new Z.Coql.CoqlOperations().getRecords(body), Z.Coql.ResponseWrapper);
  return {
    subjects: wrapper.getData().map((r) => r.getKeyValue('Subject')),
    count: wrapper.getInfo().getCount(),
    more: wrapper.getInfo().getMoreRecords(),
  };
});

await step('field_metadata', async () => {
  const params = new Z.ParameterMap();
  await params.add(Z.Fields.GetFieldsParam.MODULE, 'Tasks');
  const wrapper = await expect(await new Z.Fields.FieldsOperations().getFields(params), Z.Fields.ResponseWrapper);
  const fields = wrapper.getFields();
  const whatId = fields.find((f) => f.getAPIName() === 'What_Id');
  const subject = fields.find((f) => f.getAPIName() === 'Subject');
  return {
    api_names: fields.map((f) => f.getAPIName()),
    subject: {
      data_type: subject.getDataType(),
      json_type: subject.getJsonType(),
      length: subject.getLength(),
      system_mandatory: subject.getSystemMandatory(),
      field_label: subject.getFieldLabel(),
      display_label: subject.getDisplayLabel(),
    },
    what_id: {
      data_type: whatId.getDataType(),
      json_type: whatId.getJsonType(),
      lookup_module: whatId.getLookup()?.getModule()?.getAPIName() ?? null,
    },
    subject_v8: {
      sortable: subject.getSortable(),
      filterable: subject.getFilterable(),
      searchable: subject.getSearchable(),
      view_edit: subject.getViewType()?.getEdit(),
      api_update: subject.getOperationType()?.getAPIUpdate(),
      permission: subject.getProfiles()?.[0]?.getPermissionType(),
      sequence_number: subject.getSequenceNumber(),
    },
  };
});

await step('bulk_read', async () => {
  const operations = new Z.BulkRead.BulkReadOperations();
  const query = new Z.BulkRead.Query();
  const module = new Z.Modules.MinifiedModule();
  module.setAPIName('Invoices');
  await query.setModule(module);
  query.setFields(['id', 'Subject', 'Grand_Total', 'Account_Name']);
  const body = new Z.BulkRead.BodyWrapper();
  await body.setQuery(query);
  body.setFileType(new Z.Choice('csv'));
  const created = await expect(await operations.createBulkReadJob(body), Z.BulkRead.ActionWrapper);
  const first = created.getData()[0];
  if (!(first instanceof Z.BulkRead.SuccessResponse)) throw new Error(JSON.stringify(describeError(first)));
  const jobId = BigInt(first.getDetails().get('id')); // job ids are BigInt in the SDK's API
  let state = null;
  let count = null;
  for (let poll = 0; poll < 50; poll += 1) {
    const details = await expect(await operations.getBulkReadJobDetails(jobId), Z.BulkRead.ResponseWrapper);
    const job = details.getData()[0];
    state = job.getState().getValue();
    if (state === 'COMPLETED') {
      count = job.getResult().getCount();
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const download = await expect(await operations.downloadResult(jobId), Z.BulkRead.FileBodyWrapper);
  const stream = download.getFile();
  const zipPath = join(env.ZOHO_WORK_DIR, stream.getName());
  writeFileSync(zipPath, stream.getStream());
  return { state, count, zip: zipPath };
});

process.stdout.write(JSON.stringify(results, (_, v) => (typeof v === 'bigint' ? v.toString() : v)));
