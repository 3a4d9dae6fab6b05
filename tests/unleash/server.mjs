// Starts the real unleash-server for verdict's tests, on 127.0.0.1.
//   DATABASE_ADMIN_URL  a database to connect to for CREATE DATABASE
//   DATABASE_NAME       the test's own database (created when missing)
//   PORT                0 (any) or a port to listen on again after a stop
//   DROP=1              only drop DATABASE_NAME, then exit
// Tokens come from INIT_ADMIN_API_TOKENS / INIT_BACKEND_API_TOKENS.
// Prints {"listening": PORT} on stdout once it serves.
import pg from 'pg';

const admin = new pg.Client({ connectionString: process.env.DATABASE_ADMIN_URL });
await admin.connect();
const name = process.env.DATABASE_NAME;
if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad database name ${name}`);
if (process.env.DROP === '1') {
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
  process.exit(0);
}
const found = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
if (found.rowCount === 0) await admin.query(`CREATE DATABASE ${name}`);
await admin.end();

const url = new URL(process.env.DATABASE_ADMIN_URL);
url.pathname = `/${name}`;
const { start } = await import('unleash-server');
const port = Number(process.env.PORT || 0);
const unleash = await start({
  db: { connectionString: url.toString(), ssl: false },
  server: { port, host: '127.0.0.1', enableRequestLogger: false },
  listen: { port, host: '127.0.0.1' },
  logLevel: 'warn',
  versionCheck: { enable: false },
  sendTelemetry: false,
});
console.log(JSON.stringify({ listening: unleash.server.address().port }));
process.on('SIGTERM', async () => {
  await unleash.stop();
  process.exit(0);
});
