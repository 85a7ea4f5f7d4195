/** The pipeline's keys: those of the reply cache (reply-cache.ts), how many pre-encoded replies it keeps and how many bytes of them. */

import type { ConfigComponent } from '../config/component.js';
import { integer, single } from '../config/values.js';

export interface ReplyCacheConfig {
  /** Pre-encoded replies kept for the hot path (keys); 0 turns it off. */
  answerCacheSize: number;
  /** Bytes of pre-encoded replies kept at most. */
  answerCacheMaxBytes: number;
}

export const replyCacheComponent: ConfigComponent<ReplyCacheConfig> = {
  group: 'Answers',
  keys: {
    'answer-cache-size': { describe: 'questions whose encoded replies are kept for the hot path (0: off)', type: 'number', default: '10000' },
    'answer-cache-max-bytes': { describe: 'bytes of encoded replies kept for the hot path at most', type: 'number', default: '33554432' },
  },
  build: (raw, problems) => ({
    answerCacheSize: integer(single(raw['answer-cache-size']), 'answer-cache-size', 0, 10_000_000, problems),
    answerCacheMaxBytes: integer(single(raw['answer-cache-max-bytes']), 'answer-cache-max-bytes', 0, 2 ** 40, problems),
  }),
};
