// Shared by the benchmarks that open thousands of sockets (bench/sockets, bench/serve).
import koffi from 'koffi'

/** Raises the soft fd limit to the hard one (two fds per loopback connection); returns the new limit. */
export function raiseFdLimit(): number {
  const libc = koffi.load(null as unknown as string)
  const getrlimit = libc.func('int getrlimit(int resource, _Out_ uint64_t *rlim)')
  const setrlimit = libc.func('int setrlimit(int resource, const uint64_t *rlim)')
  const RLIMIT_NOFILE = 7
  const limit = new BigUint64Array(2)
  getrlimit(RLIMIT_NOFILE, limit)
  limit[0] = limit[1]
  if (setrlimit(RLIMIT_NOFILE, limit) !== 0) console.log(`could not raise the fd limit (errno ${koffi.errno()})`)
  getrlimit(RLIMIT_NOFILE, limit)
  return Number(limit[0])
}
