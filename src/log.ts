/** The process logger: pino, JSON by default, pretty (pino-pretty, to stderr) only when asked. */

import { pino, type Logger } from 'pino';
import type { Config } from './config.js';

export function createLogger(config: Pick<Config, 'logLevel' | 'logFormat'>): Logger {
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
