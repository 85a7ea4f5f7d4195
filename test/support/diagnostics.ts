/** A diagnostics seam as a server sets it up: state changes logged (the components' own loggers). */

import { Diagnostics } from '../../src/diagnostics/channels.js';
import { StateLog } from '../../src/diagnostics/state-log.js';

export function loggedDiagnostics(): Diagnostics {
  const diagnostics = new Diagnostics();
  new StateLog(diagnostics);
  return diagnostics;
}
