/**
 * Who holds a lease or a hold in the host cache, and whether that process still runs.
 *
 * An owner is written down as `<pid namespace>:<pid>:<start time>`: the start time (field 22 of
 * /proc/PID/stat, clock ticks since boot) tells a live owner from an unrelated process that got its pid
 * after it died, and the pid namespace (the inode of /proc/self/ns/pid) tells whether the pid can be looked
 * up here at all. Two processes in different containers sharing one cache directory see different pids for
 * the same process, so an owner from another namespace is `unknown`: its records are trusted until they
 * expire, never declared dead on the strength of a pid that means something else here.
 *
 * A zombie (killed, not reaped yet) still answers kill(0), but it fetches nothing: it counts as dead.
 * Answers are kept for a moment, since a waiter asks on every poll.
 */
import { readFileSync, readlinkSync } from 'node:fs';

export type Liveness = 'alive' | 'dead' | 'unknown';

/** How long an answer about another process is reused (ms). */
const ANSWER_MS = 100;

/** Fields 3 on of /proc/PID/stat (state, ppid, … start time at index 19), or undefined without such a process. */
function statFields(pid: number | 'self'): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function pidNamespace(): string {
  try {
    return /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))?.[1] ?? 'none';
  } catch {
    return 'none';
  }
}

const namespace = pidNamespace();
let own: string | undefined;
const answers = new Map<string, { at: number; liveness: Liveness }>();

/** This process as an owner. */
export function ownerToken(): string {
  own ??= `${namespace}:${process.pid}:${statFields('self')?.[19] ?? Date.now()}`;
  return own;
}

/** Whether the process an owner token names still runs (`unknown`: it lives in another pid namespace). */
export function ownerLiveness(token: string): Liveness {
  if (token === ownerToken()) return 'alive';
  const now = Date.now();
  const known = answers.get(token);
  if (known && now - known.at < ANSWER_MS) return known.liveness;
  const [ns, pid, start] = token.split(':');
  let liveness: Liveness;
  if (ns !== namespace || namespace === 'none') liveness = 'unknown';
  else {
    const fields = statFields(Number(pid));
    liveness = fields !== undefined && fields[0] !== 'Z' && fields[0] !== 'X' && fields[19] === start ? 'alive' : 'dead';
  }
  if (answers.size > 1000) answers.clear();
  answers.set(token, { at: now, liveness });
  return liveness;
}
