/** The process logger: pino, JSON by default, pretty (pino-pretty, to stderr) only when asked; and the logging keys. */

import { pino, type Logger } from 'pino';
import type { ConfigComponent } from './config/component.js';
import { boolean, choice, single } from './config/values.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const LOG_FORMATS = ['json', 'pretty'] as const;

export interface LogConfig {
  logLevel: LogLevel;
  logFormat: 'json' | 'pretty';
  /** Log every query at info level. */
  queryLog: boolean;
}

export const logComponent: ConfigComponent<LogConfig> = {
  group: 'Logging',
  keys: {
    'log-level': { describe: 'the least severe level logged', choices: LOG_LEVELS, default: 'info' },
    'log-format': { describe: 'log format (pretty: for people, on a terminal)', choices: LOG_FORMATS, default: 'json' },
    'query-log': { describe: 'log every query (client, name, type, rcode, size)', boolean: true, default: 'false' },
  },
  build: (raw, problems) => ({
    logLevel: choice(single(raw['log-level']), 'log-level', LOG_LEVELS, problems),
    logFormat: choice(single(raw['log-format']), 'log-format', LOG_FORMATS, problems),
    queryLog: boolean(single(raw['query-log']), 'query-log', problems),
  }),
};

export function createLogger(config: Pick<LogConfig, 'logLevel' | 'logFormat'>): Logger {
  const options = {
    level: config.logLevel,
    base: { name: 'svcdns' },
    // Belt and braces: nothing secret is logged on purpose, and these paths never are by accident.
    redact: { paths: ['token', '*.token', 'headers.authorization', '*.headers["x-consul-token"]'], censor: '[redacted]' },
  };
  if (config.logFormat === 'pretty') {
    return pino({
      ...options,
      transport: { target: 'pino-pretty', options: { destination: 2, ignore: 'pid,hostname,name', translateTime: 'SYS:HH:MM:ss.l' } },
    });
  }
  return pino(options, pino.destination({ dest: 2, sync: true }));
}
