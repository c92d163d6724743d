// What the kernel says about CPU time, for the benchmark's figures (Linux /proc).
import { readFileSync } from 'node:fs'

/** User plus system CPU seconds of a process, from /proc/<pid>/stat; `ticks` is CLK_TCK. */
export function cpuSeconds(pid: number, ticks: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may hold spaces, hence the last ')'): state is the 1st,
  // utime the 12th and stime the 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / ticks
}

/** Busy and total time of one core so far, in ticks, from /proc/stat. */
export function coreTicks(core: number): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${core} `))
  if (!line) return { busy: 0, total: 0 }
  // user nice system idle iowait irq softirq steal ...: idle and iowait are the idle ones.
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number)
  const total = ticks.reduce((sum, value) => sum + value, 0)
  return { busy: total - (ticks[3] ?? 0) - (ticks[4] ?? 0), total }
}
