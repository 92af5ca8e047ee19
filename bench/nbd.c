/* SPDX-License-Identifier: MIT */
/*
 * bench/nbd.c — `pitcopy serve` over NBD against qemu-storage-daemon (group tag "nbd").
 *
 * Role
 *   The other groups drive the engine through its API; these drive the
 *   daemon the way a user does: `build/pitcopy serve` as a child process,
 *   the pitcopy CLI for volumes and mappings, fio's nbd ioengine for the
 *   I/O.  The peer is qemu-storage-daemon (QEMU 7.2) exporting the SAME
 *   raw file (aio=io_uring, cache.direct=on), its copy-before-write filter
 *   with a fleecing target, and its blockdev-backup job, all with the
 *   command lines of bench/README.md.  The two daemons never run at once.
 *
 * Files
 *   The state directory of `pitcopy serve` is the harness's work directory
 *   itself (its files are registered with bench_path, so exit and signals
 *   remove them); volume files are there too, except serve_rss's 1 TiB
 *   sparse volumes, which go to the /dev/shm directory.
 *
 * Children
 *   Daemons run in the foreground as our children (PR_SET_PDEATHSIG, pids
 *   in daemons[] for the signal handler); the harness waits for their NBD
 *   socket to accept.  One-shot commands (CLI, fio, qemu-img, qemu-io) go
 *   through run_cmd, whose pid is baseline_child while it runs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/baseline.h"
#include "bench/bench.h"

#define NBD_QD       "32"
#define NBD_GRAIN    (64u << 10)
#define NBD_RUNS_MAX 3u

static volatile sig_atomic_t daemons[2];

void nbd_kill_children(void)
{
    for (int i = 0; i < 2; i++)
        if (daemons[i] > 0)
            kill(daemons[i], SIGKILL);
}

/* ------------------------------------------------------------------------
 * Children. */

static char pitcopy_bin[PATH_MAX + 16];

static int find_pitcopy(struct bench *b)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return fail(b, -errno, "readlink /proc/self/exe: %s", strerror(errno));
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0;
    snprintf(pitcopy_bin, sizeof pitcopy_bin, "%s/pitcopy", self);
    if (access(pitcopy_bin, X_OK) < 0)
        return fail(b, -ENOENT, "%s not found (make builds it)", pitcopy_bin);
    return 0;
}

/* fork + exec; the child's stdout to pfd_out (or our stderr). */
static pid_t spawn(char *const argv[], int pfd_out)
{
    char path[PATH_MAX];
    pid_t parent = getpid();
    if (baseline_find_in_path(argv[0], path, sizeof path) < 0) {
        errno = ENOENT;
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(pfd_out >= 0 ? pfd_out : STDERR_FILENO, STDOUT_FILENO);
        execv(path, argv);
        _exit(127);
    }
    return pid;
}

/* Run argv to its end; with out, its stdout (malloc'd).  Returns the exit status or -errno. */
static int run_cmd(struct bench *b, char *const argv[], char **out)
{
    int pfd[2] = { -1, -1 };
    if (out && pipe2(pfd, O_CLOEXEC) < 0)
        return fail(b, -errno, "pipe: %s", strerror(errno));
    pid_t pid = spawn(argv, out ? pfd[1] : -1);
    if (pid < 0) {
        int e = errno;
        if (out) {
            close(pfd[0]);
            close(pfd[1]);
        }
        return fail(b, -e, "cannot run %s: %s", argv[0], strerror(e));
    }
    baseline_child = pid;
    if (out) {
        size_t len = 0, cap = 65536;
        char *buf = malloc(cap);
        close(pfd[1]);
        for (;;) {
            if (cap - len < 4096) {
                cap *= 2;
                buf = realloc(buf, cap);
            }
            ssize_t n = read(pfd[0], buf + len, cap - len - 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            len += (size_t)n;
        }
        close(pfd[0]);
        buf[len] = 0;
        *out = buf;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    baseline_child = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The pitcopy CLI against the daemon of state directory b->dir; fails the group on a non-zero exit. */
static int pc_cli(struct bench *b, char **out, ...)
{
    char *argv[32];
    unsigned n = 0;
    va_list ap;
    argv[n++] = pitcopy_bin;
    argv[n++] = "--state-dir";
    argv[n++] = b->dir;
    va_start(ap, out);
    for (char *a; n < 31 && (a = va_arg(ap, char *));)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char *junk = NULL;
    int st = run_cmd(b, argv, out ? out : &junk);
    free(junk);
    if (st < 0)
        return st;
    if (st != 0) {
        char cmd[256] = "";
        for (unsigned i = 3; i < n; i++)
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s", argv[i]);
        return fail(b, -EIO, "pitcopy%s: exit status %d", cmd, st);
    }
    return 0;
}

static bool sock_ready(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof a.sun_path)
        return false;
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Start a daemon (slot 0 pitcopy, 1 qemu) and wait until every socket in socks accepts. */
static int daemon_start(struct bench *b, int slot, char *const argv[], const char *sock1,
                        const char *sock2)
{
    pid_t pid = spawn(argv, -1);
    if (pid < 0)
        return fail(b, -errno, "cannot run %s: %s", argv[0], strerror(errno));
    daemons[slot] = pid;
    for (int i = 0; i < 1000; i++) {           /* 10 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            daemons[slot] = 0;
            return fail(b, -EIO, "%s exited at start (status %d); see its messages above",
                        argv[0], WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
        if (sock_ready(sock1) && (!sock2 || sock_ready(sock2)))
            return 0;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    daemons[slot] = 0;
    return fail(b, -ETIMEDOUT, "%s: its socket %s did not come up in 10 s", argv[0], sock1);
}

static void daemon_stop(int slot)
{
    pid_t pid = daemons[slot];
    if (pid <= 0)
        return;
    double t0 = now_s();
    kill(pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            daemons[slot] = 0;
            if (now_s() - t0 > 0.5)
                logf_("note: daemon %d took %.1f s to stop", (int)pid, now_s() - t0);
            return;
        }
        usleep(10000);
    }
    logf_("warning: daemon %d ignored SIGTERM for 10 s; killing it", (int)pid);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    daemons[slot] = 0;
}

/* ------------------------------------------------------------------------
 * The two daemons. */

struct nbd_ctx {
    char file[PATH_LEN];        /* the shared raw source file */
    char pc_sock[PATH_LEN];     /* pitcopy serve: DIR/nbd.sock */
    char q_sock[PATH_LEN];      /* qemu-storage-daemon's NBD socket */
    char q_qmp[PATH_LEN];
    char scratch[PATH_LEN];     /* fleecing target / backup target / pitcopy target */
    uint64_t size;
    double secs;
    unsigned runs;
};

static const char *serve_durability;    /* --durability for the next start; NULL: default */

static int pc_serve_start(struct bench *b, struct nbd_ctx *c)
{
    char p[PATH_LEN];
    /* a fresh catalogue: the daemon's files are the work directory's */
    unlink(bench_path(b->dir, "pitcopy.json", p));
    bench_path(b->dir, "pitcopy.json.tmp", p);
    bench_path(b->dir, "lock", p);
    /* the management catalogue (mgmt/catalog.c) and SQLite's files beside it */
    bench_path(b->dir, "catalog.db", p);
    bench_path(b->dir, "catalog.db-wal", p);
    bench_path(b->dir, "catalog.db-shm", p);
    bench_path(b->dir, "catalog.db-journal", p);
    /* the mappings' metadata files: "m" (cow, bgcopy) and m0-m7 (serve_rss) */
    bench_subdir(b->dir, "meta", p);
    bench_path(b->dir, "meta/m.pcmeta", p);
    for (unsigned i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "meta/m%u.pcmeta", i);
        bench_path(b->dir, name, p);
    }
    char ctl[PATH_LEN];
    bench_path(b->dir, "control.sock", ctl);
    bench_path(b->dir, "nbd.sock", c->pc_sock);
    char dur[32];
    snprintf(dur, sizeof dur, "%s", serve_durability ? serve_durability : "strict");
    char *argv[] = { pitcopy_bin, "serve", "--state-dir", b->dir, "--durability", dur, NULL };
    return daemon_start(b, 0, argv, c->pc_sock, ctl);
}

static void pc_serve_stop(struct bench *b)
{
    char p[PATH_LEN], f[PATH_LEN + 256];
    daemon_stop(0);
    /* The mappings' metadata: deletes empty it, but serve_rss stops the
     * daemon with its mappings in place. */
    DIR *d = opendir(bench_path(b->dir, "meta", p));
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(f, sizeof f, "%s/%s", p, e->d_name);
        unlink(f);
    }
    if (d)
        closedir(d);
    rmdir(p);
}

/* qemu-storage-daemon on c->file: plain export "src" of node "src", or the CBW graph
 * (export "src" of node cbw over fleecing target c->scratch, "snap" read-only). */
static int qsd_start(struct bench *b, struct nbd_ctx *c, bool cbw)
{
    char a_src[PATH_LEN + 128], a_fl[PATH_LEN + 128], a_nbd[PATH_LEN + 64], a_qmp[PATH_LEN + 64];
    bench_path(b->dir, "qsd-nbd.sock", c->q_sock);
    bench_path(b->dir, "qsd-qmp.sock", c->q_qmp);
    unlink(c->q_sock);
    unlink(c->q_qmp);
    snprintf(a_src, sizeof a_src,
             "driver=file,node-name=src,filename=%s,aio=io_uring,cache.direct=on", c->file);
    snprintf(a_fl, sizeof a_fl,
             "driver=file,node-name=fleece,filename=%s,aio=io_uring,cache.direct=on", c->scratch);
    snprintf(a_nbd, sizeof a_nbd, "addr.type=unix,addr.path=%s", c->q_sock);
    snprintf(a_qmp, sizeof a_qmp, "socket,id=qmp0,path=%s,server=on,wait=off", c->q_qmp);
    char *plain[] = { "qemu-storage-daemon", "--blockdev", a_src, "--nbd-server", a_nbd,
                      "--export", "type=nbd,id=exp-src,node-name=src,name=src,writable=on",
                      "--chardev", a_qmp, "--monitor", "chardev=qmp0", NULL };
    char *graph[] = { "qemu-storage-daemon", "--blockdev", a_src, "--blockdev", a_fl,
                      "--blockdev", "driver=copy-before-write,node-name=cbw,file=src,target=fleece",
                      "--blockdev", "driver=snapshot-access,node-name=snap,file=cbw",
                      "--nbd-server", a_nbd,
                      "--export", "type=nbd,id=exp-src,node-name=cbw,name=src,writable=on",
                      "--export", "type=nbd,id=exp-snap,node-name=snap,name=snap,writable=off",
                      "--chardev", a_qmp, "--monitor", "chardev=qmp0", NULL };
    return daemon_start(b, 1, cbw ? graph : plain, c->q_sock, c->q_qmp);
}

static void qsd_stop(void)
{
    daemon_stop(1);
}

/* A sparse raw file of size bytes (fresh). */
static int sparse_file(struct bench *b, const char *path, uint64_t size)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(b, -e, "cannot create %s: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

/* ------------------------------------------------------------------------
 * fio. */

static int fio_nbd(struct bench *b, struct nbd_ctx *c, const char *uri, const char *rw,
                   unsigned nj, const char *io_size, double *iops)
{
    char a_uri[PATH_LEN + 64], a_rw[64], a_nj[32], a_rt[48], a_sz[48];
    struct fio_result fr;
    snprintf(a_uri, sizeof a_uri, "--uri=%s", uri);
    snprintf(a_rw, sizeof a_rw, "--rw=%s", rw);
    snprintf(a_nj, sizeof a_nj, "--numjobs=%u", nj);
    snprintf(a_rt, sizeof a_rt, "--runtime=%.0fms", c->secs * 1000);
    char *timed[] = { "fio", "--name=nbd", "--ioengine=nbd", a_uri, a_rw, "--bs=4k",
                      "--iodepth=" NBD_QD, a_nj, "--group_reporting", "--time_based", a_rt,
                      "--randrepeat=0", "--norandommap", NULL };
    char *pass[] = { "fio", "--name=nbd", "--ioengine=nbd", a_uri, a_rw, "--bs=4k",
                     "--iodepth=" NBD_QD, a_nj, "--group_reporting", a_sz, NULL };
    if (io_size)
        snprintf(a_sz, sizeof a_sz, "--io_size=%s", io_size);
    double t0 = now_s();
    int r = fio_run(io_size ? pass : timed, &fr, b->msg, sizeof b->msg);
    if (r < 0)
        return r;
    if (!io_size && now_s() - t0 > c->secs + 2)
        logf_("note: fio %s numjobs %u on %s took %.1f s for a %.1f s run", rw, nj, uri,
              now_s() - t0, c->secs);
    *iops = fr.jobs[0].read.iops + fr.jobs[0].write.iops;
    return 0;
}

static int fio_raw(struct bench *b, struct nbd_ctx *c, const char *rw, unsigned nj, double *iops)
{
    char a_f[PATH_LEN + 16], a_rw[64], a_nj[32], a_rt[48], a_sz[48];
    struct fio_result fr;
    snprintf(a_f, sizeof a_f, "--filename=%s", c->file);
    snprintf(a_rw, sizeof a_rw, "--rw=%s", rw);
    snprintf(a_nj, sizeof a_nj, "--numjobs=%u", nj);
    snprintf(a_rt, sizeof a_rt, "--runtime=%.0fms", c->secs * 1000);
    snprintf(a_sz, sizeof a_sz, "--size=%llu", (unsigned long long)c->size);
    char *argv[] = { "fio", "--name=raw", a_f, "--ioengine=io_uring", "--direct=1", a_rw,
                     "--bs=4k", "--iodepth=" NBD_QD, a_nj, "--group_reporting", "--time_based",
                     a_rt, a_sz, "--randrepeat=0", "--norandommap", NULL };
    int r = fio_run(argv, &fr, b->msg, sizeof b->msg);
    if (r < 0)
        return r;
    *iops = fr.jobs[0].read.iops + fr.jobs[0].write.iops;
    return 0;
}

/* The shared source: size bytes of random data (fio, sequential 1 MiB, O_DIRECT). */
static int nbd_setup(struct bench *b, struct nbd_ctx *c)
{
    memset(c, 0, sizeof *c);
    int r = find_pitcopy(b);
    if (r < 0)
        return r;
    if ((r = baseline_probe("qemu-storage-daemon")) < 0)
        return fail(b, r, "qemu-storage-daemon is needed (Debian: qemu-system-common; "
                          "scripts/install-deps installs it)");
    c->size = b->vol_size < 1 * GiB ? 1 * GiB : b->vol_size > 2 * GiB ? 2 * GiB : b->vol_size;
    c->secs = b->quick ? 1.5 : 3.0;
    c->runs = b->runs < NBD_RUNS_MAX ? b->runs : NBD_RUNS_MAX;
    bench_path(b->dir, "nbd-src.raw", c->file);
    bench_path(b->dir, "nbd-scratch.raw", c->scratch);
    struct stat st;
    if (stat(c->file, &st) == 0 && (uint64_t)st.st_size == c->size)
        return 0;                               /* filled by an earlier nbd group */
    if ((r = sparse_file(b, c->file, c->size)) < 0)
        return r;
    char a_f[PATH_LEN + 16], a_sz[48];
    struct fio_result fr;
    snprintf(a_f, sizeof a_f, "--filename=%s", c->file);
    snprintf(a_sz, sizeof a_sz, "--size=%llu", (unsigned long long)c->size);
    char *argv[] = { "fio", "--name=fill", a_f, "--ioengine=io_uring", "--direct=1",
                     "--rw=write", "--bs=1m", "--iodepth=16", a_sz, "--refill_buffers", NULL };
    double t0 = now_s();
    if ((r = fio_run(argv, &fr, b->msg, sizeof b->msg)) < 0)
        return r;
    logf_("nbd: source %s, %llu MiB of random data in %.1f s", c->file,
          (unsigned long long)(c->size >> 20), now_s() - t0);
    return 0;
}

/* ------------------------------------------------------------------------
 * nbd_randread_4k, nbd_randwrite_4k (numjobs 1 and 4). */

int bench_nbd_rand(struct bench *b)
{
    struct nbd_ctx c;
    int r = nbd_setup(b, &c);
    if (r < 0)
        return r;
    static const char *rws[2] = { "randread", "randwrite" };
    static const unsigned njs[2] = { 1, 4 };
    /* [rw][nj][run]: pitcopy, qsd, raw */
    double pc[2][2][MAX_RUNS], q[2][2][MAX_RUNS], raw[2][2][MAX_RUNS];
    char pc_uri[PATH_LEN + 64], q_uri[PATH_LEN + 64];
    char size_s[32];
    snprintf(size_s, sizeof size_s, "%llu", (unsigned long long)c.size);

    for (unsigned run = 0; run < c.runs; run++) {
        for (unsigned side = 0; side < 3; side++) {
            unsigned who = (side + run) % 3;    /* rotate which goes first */
            if (who == 0) {
                if ((r = pc_serve_start(b, &c)) < 0)
                    return r;
                r = pc_cli(b, NULL, "volume", "create", "src", "--size", size_s, "--file",
                           c.file, NULL);
                snprintf(pc_uri, sizeof pc_uri, "nbd+unix:///src?socket=%s", c.pc_sock);
            } else if (who == 1) {
                if ((r = qsd_start(b, &c, false)) < 0)
                    return r;
                snprintf(q_uri, sizeof q_uri, "nbd+unix:///src?socket=%s", c.q_sock);
            }
            for (unsigned i = 0; r == 0 && i < 2; i++)
                for (unsigned j = 0; r == 0 && j < 2; j++) {
                    if (who == 0)
                        r = fio_nbd(b, &c, pc_uri, rws[i], njs[j], NULL, &pc[i][j][run]);
                    else if (who == 1)
                        r = fio_nbd(b, &c, q_uri, rws[i], njs[j], NULL, &q[i][j][run]);
                    else
                        r = fio_raw(b, &c, rws[i], njs[j], &raw[i][j][run]);
                }
            if (who == 0) {
                if (r == 0)
                    r = pc_cli(b, NULL, "volume", "delete", "src", "--keep-file", NULL);
                pc_serve_stop(b);
            } else if (who == 1) {
                qsd_stop();
            }
            if (r < 0)
                return r;
        }
        logf_("nbd_rand run %u: read nj1 pitcopy %.0f qsd %.0f raw %.0f | nj4 %.0f %.0f %.0f; "
              "write nj1 %.0f %.0f %.0f | nj4 %.0f %.0f %.0f IOPS", run,
              pc[0][0][run], q[0][0][run], raw[0][0][run], pc[0][1][run], q[0][1][run],
              raw[0][1][run], pc[1][0][run], q[1][0][run], raw[1][0][run], pc[1][1][run],
              q[1][1][run], raw[1][1][run]);
    }
    static const char *names[2][2] = { { "nbd_randread_4k", "nbd_randread_4k_nj4" },
                                       { "nbd_randwrite_4k", "nbd_randwrite_4k_nj4" } };
    for (unsigned i = 0; i < 2; i++)
        for (unsigned j = 0; j < 2; j++) {
            struct result res = result_new(names[i][j], "IOPS", 2.0, ">=");
            double vr[MAX_RUNS], qr[MAX_RUNS];
            for (unsigned k = 0; k < c.runs; k++) {
                res.runs[k] = pc[i][j][k];
                res.base_runs[k] = q[i][j][k];
                vr[k] = pc[i][j][k] / raw[i][j][k];
                qr[k] = q[i][j][k] / raw[i][j][k];
            }
            res.nruns = res.nbase = c.runs;
            detail_str(&res, "baseline_is", "qemu-storage-daemon 7.2 NBD export, same file");
            detail_num(&res, "numjobs", njs[j]);
            detail_num(&res, "vs_raw", median(vr, c.runs));
            detail_num(&res, "qsd_vs_raw", median(qr, c.runs));
            /* The ratio a server would reach at the raw file's own IOPS:
             * below the goal, the goal is out of reach in this run. */
            detail_num(&res, "raw_vs_qsd", 1.0 / median(qr, c.runs));
            detail_runs(&res, "raw_iops_runs", raw[i][j], c.runs);
            detail_num(&res, "raw_iops", median(raw[i][j], c.runs));
            detail_num(&res, "size_bytes", (double)c.size);
            detail_num(&res, "seconds", c.secs);
            emit(b, &res, i * 2 + j);
        }
    return 0;
}

/* ------------------------------------------------------------------------
 * nbd_cow_first_touch_4k: one 4 KiB write per 64 KiB grain (fio rw=write:60k). */

/* Writes the block device holding file has completed so far (the fifth
 * field of /sys/dev/block/MAJ:MIN/stat), or -1 where that cannot be read.
 * Other activity on the device counts too: a figure, not a proof. */
static double dev_writes(const char *file)
{
    struct stat st;
    char path[64];
    unsigned long long f[5];
    if (stat(file, &st) < 0)
        return -1;
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/stat", major(st.st_dev), minor(st.st_dev));
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    int n = fscanf(fp, "%llu %llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3], &f[4]);
    fclose(fp);
    return n == 5 ? (double)f[4] : -1;
}

/* One pass of first-touch writes through pitcopy serve: fresh source,
 * target and started nocopy mapping, fio, teardown.  *dw: the device
 * writes the fio run took (-1: unknown). */
static int pc_cow_pass(struct bench *b, struct nbd_ctx *cp, const char *size_s,
                       const char *grain_s, const char *io_size, bool log_map, double *iops,
                       double *dw)
{
    struct nbd_ctx c = *cp;
    char pc_uri[PATH_LEN + 64];
    int r;
    if ((r = sparse_file(b, c.scratch, c.size)) < 0)
        return r;
    if ((r = pc_serve_start(b, &c)) < 0)
        return r;
    snprintf(pc_uri, sizeof pc_uri, "nbd+unix:///src?socket=%s", c.pc_sock);
    r = pc_cli(b, NULL, "volume", "create", "src", "--size", size_s, "--file", c.file, NULL);
    if (r == 0)
        r = pc_cli(b, NULL, "volume", "create", "tgt", "--size", size_s, "--file",
                   c.scratch, NULL);
    if (r == 0)
        r = pc_cli(b, NULL, "map", "create", "src", "tgt", "--name", "m", "--grain",
                   grain_s, "--copy-rate", "0", NULL);
    if (r == 0)
        r = pc_cli(b, NULL, "map", "start", "m", NULL);
    double w0 = dev_writes(c.file);
    if (r == 0)
        r = fio_nbd(b, &c, pc_uri, "write:60k", 1, io_size, iops);
    double w1 = dev_writes(c.file);
    if (dw)
        *dw = w0 >= 0 && w1 >= w0 ? w1 - w0 : -1;
    char *js = NULL;
    if (r == 0 && pc_cli(b, &js, "map", "show", "m", "--json", NULL) == 0 && js) {
        char *p = strstr(js, "\"grains_split\"");
        if (p && log_map)
            logf_("nbd_cow: pitcopy map after the pass: %.40s", p);
    }
    free(js);
    if (r == 0)
        r = pc_cli(b, NULL, "map", "delete", "m", "--force", NULL);
    if (r == 0)
        r = pc_cli(b, NULL, "volume", "delete", "tgt", "--keep-file", NULL);
    if (r == 0)
        r = pc_cli(b, NULL, "volume", "delete", "src", "--keep-file", NULL);
    pc_serve_stop(b);
    return r;
}



int bench_nbd_cow(struct bench *b)
{
    struct nbd_ctx c;
    int r = nbd_setup(b, &c);
    if (r < 0)
        return r;
    char size_s[32], io_size[32], grain_s[32], q_uri[PATH_LEN + 64];
    /* every grain once (quick: the first half of them) */
    uint64_t writes = c.size / NBD_GRAIN / (b->quick ? 2 : 1);
    snprintf(size_s, sizeof size_s, "%llu", (unsigned long long)c.size);
    snprintf(io_size, sizeof io_size, "%llu", (unsigned long long)(writes * 4096));
    snprintf(grain_s, sizeof grain_s, "%u", NBD_GRAIN);
    struct result res = result_new("nbd_cow_first_touch_4k", "IOPS", 1.5, ">=");
    double pc_dw[MAX_RUNS], q_dw[MAX_RUNS];     /* device writes per first touch */

    for (unsigned run = 0; run < c.runs; run++) {
        for (unsigned side = 0; side < 2; side++) {
            if ((side ^ (run & 1)) == 0) {
                r = pc_cow_pass(b, &c, size_s, grain_s, io_size, run == 0, &res.runs[run],
                                &pc_dw[run]);
                pc_dw[run] = pc_dw[run] >= 0 ? pc_dw[run] / (double)writes : -1;
            } else {
                if ((r = sparse_file(b, c.scratch, c.size)) < 0)
                    return r;
                if ((r = qsd_start(b, &c, true)) < 0)
                    return r;
                snprintf(q_uri, sizeof q_uri, "nbd+unix:///src?socket=%s", c.q_sock);
                double w0 = dev_writes(c.file);
                r = fio_nbd(b, &c, q_uri, "write:60k", 1, io_size, &res.base_runs[run]);
                double w1 = dev_writes(c.file);
                q_dw[run] = w0 >= 0 && w1 >= w0 ? (w1 - w0) / (double)writes : -1;
                qsd_stop();
            }
            if (r < 0)
                return r;
        }
        logf_("nbd_cow run %u: pitcopy %.0f IOPS, qemu cbw %.0f IOPS (%llu first-touch writes; "
              "device writes per first touch %.2f and %.2f)", run, res.runs[run],
              res.base_runs[run], (unsigned long long)writes, pc_dw[run], q_dw[run]);
    }
    unlink(c.scratch);
    res.nruns = res.nbase = c.runs;
    detail_str(&res, "baseline_is", "qemu-storage-daemon copy-before-write + fleecing target");
    detail_num(&res, "writes_per_run", (double)writes);
    detail_num(&res, "grain_bytes", NBD_GRAIN);
    /* The device's own count of writes (the filesystem's journal and the
     * metadata included): what durability costs in I/Os. */
    detail_num(&res, "dev_writes_per_touch", median(pc_dw, c.runs));
    detail_num(&res, "qemu_dev_writes_per_touch", median(q_dw, c.runs));
    emit(b, &res, 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * nbd_durability_cost: the first-touch writes of nbd_cow_first_touch_4k
 * with --durability strict (every copy and its bit durable before the
 * source write) against --durability none, alternating, same files. */

int bench_nbd_durability(struct bench *b)
{
    struct nbd_ctx c;
    int r = nbd_setup(b, &c);
    if (r < 0)
        return r;
    char size_s[32], io_size[32], grain_s[32];
    uint64_t writes = c.size / NBD_GRAIN / (b->quick ? 2 : 1);
    snprintf(size_s, sizeof size_s, "%llu", (unsigned long long)c.size);
    snprintf(io_size, sizeof io_size, "%llu", (unsigned long long)(writes * 4096));
    snprintf(grain_s, sizeof grain_s, "%u", NBD_GRAIN);
    struct result res = result_new("nbd_durability_cost", "IOPS", 0.5, ">=");

    for (unsigned run = 0; run < c.runs; run++) {
        for (unsigned side = 0; side < 2; side++) {
            bool strict = (side ^ (run & 1)) == 0;
            serve_durability = strict ? "strict" : "none";
            r = pc_cow_pass(b, &c, size_s, grain_s, io_size, false,
                            strict ? &res.runs[run] : &res.base_runs[run], NULL);
            serve_durability = NULL;
            if (r < 0)
                return r;
        }
        logf_("nbd_durability run %u: strict %.0f IOPS, none %.0f IOPS (%llu first-touch writes)",
              run, res.runs[run], res.base_runs[run], (unsigned long long)writes);
    }
    unlink(c.scratch);
    res.nruns = res.nbase = c.runs;
    detail_str(&res, "baseline_is", "the same pitcopy serve with --durability none");
    detail_num(&res, "writes_per_run", (double)writes);
    emit(b, &res, 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * nbd_bgcopy: unlimited background copy vs blockdev-backup sync=full. */

struct qmp {
    FILE *f;
    char  line[65536];
};

static int qmp_open(struct bench *b, struct qmp *q, const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof a.sun_path)
        return fail(b, -ENAMETOOLONG, "socket path too long: %s", path);
    memcpy(a.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(b, -e, "QMP connect %s: %s", path, strerror(e));
    }
    q->f = fdopen(fd, "r+");
    if (!q->f || !fgets(q->line, sizeof q->line, q->f))
        return fail(b, -EIO, "QMP: no greeting");
    return 0;
}

/* Send one command; q->line gets the reply (events skipped). */
static int qmp_cmd(struct bench *b, struct qmp *q, const char *json)
{
    fprintf(q->f, "%s\n", json);
    fflush(q->f);
    for (;;) {
        if (!fgets(q->line, sizeof q->line, q->f))
            return fail(b, -EIO, "QMP: connection closed after %s", json);
        if (strncmp(q->line, "{\"return\"", 9) == 0)
            return 0;
        if (strncmp(q->line, "{\"error\"", 8) == 0) {
            q->line[strcspn(q->line, "\n")] = 0;
            return fail(b, -EIO, "QMP %s: %s", json, q->line);
        }
    }
}

int bench_nbd_bgcopy(struct bench *b)
{
    struct nbd_ctx c;
    int r = nbd_setup(b, &c);
    if (r < 0)
        return r;
    char size_s[32], grain_s[32], cmd[PATH_LEN + 256];
    snprintf(size_s, sizeof size_s, "%llu", (unsigned long long)c.size);
    snprintf(grain_s, sizeof grain_s, "%u", NBD_GRAIN);
    struct result res = result_new("nbd_bgcopy", "MB/s", 1.2, ">=");
    double mb = (double)c.size / 1e6;

    for (unsigned run = 0; run < c.runs; run++) {
        for (unsigned side = 0; side < 2; side++) {
            if ((r = sparse_file(b, c.scratch, c.size)) < 0)
                return r;
            if ((side ^ (run & 1)) == 0) {
                if ((r = pc_serve_start(b, &c)) < 0)
                    return r;
                r = pc_cli(b, NULL, "volume", "create", "src", "--size", size_s, "--file", c.file, NULL);
                if (r == 0)
                    r = pc_cli(b, NULL, "volume", "create", "tgt", "--size", size_s, "--file",
                               c.scratch, NULL);
                if (r == 0)
                    r = pc_cli(b, NULL, "map", "create", "src", "tgt", "--name", "m", "--grain",
                               grain_s, "--copy-rate", "unlimited", NULL);
                double t0 = now_s();
                if (r == 0)
                    r = pc_cli(b, NULL, "map", "start", "m", NULL);
                if (r == 0)
                    r = pc_cli(b, NULL, "map", "wait", "m", "--state", "idle_or_copied",
                               "--timeout", "600", NULL);
                double t = now_s() - t0;
                res.runs[run] = mb / t;
                if (r == 0)
                    r = pc_cli(b, NULL, "map", "delete", "m", "--force", NULL);
                if (r == 0)
                    r = pc_cli(b, NULL, "volume", "delete", "tgt", "--keep-file", NULL);
                if (r == 0)
                    r = pc_cli(b, NULL, "volume", "delete", "src", "--keep-file", NULL);
                pc_serve_stop(b);
            } else {
                struct qmp q = { 0 };
                if ((r = qsd_start(b, &c, false)) < 0)
                    return r;
                r = qmp_open(b, &q, c.q_qmp);
                if (r == 0)
                    r = qmp_cmd(b, &q, "{\"execute\":\"qmp_capabilities\"}");
                snprintf(cmd, sizeof cmd,
                         "{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"file\","
                         "\"node-name\":\"tgt\",\"filename\":\"%s\",\"aio\":\"io_uring\","
                         "\"cache\":{\"direct\":true}}}", c.scratch);
                if (r == 0)
                    r = qmp_cmd(b, &q, cmd);
                double t0 = now_s();
                if (r == 0)
                    r = qmp_cmd(b, &q, "{\"execute\":\"blockdev-backup\",\"arguments\":{"
                                       "\"job-id\":\"bk0\",\"device\":\"src\",\"target\":\"tgt\","
                                       "\"sync\":\"full\",\"auto-dismiss\":false}}");
                while (r == 0) {
                    r = qmp_cmd(b, &q, "{\"execute\":\"query-jobs\"}");
                    if (r == 0 && strstr(q.line, "\"concluded\"")) {
                        if (strstr(q.line, "\"error\""))
                            r = fail(b, -EIO, "blockdev-backup failed: %s", q.line);
                        break;
                    }
                    usleep(20000);
                }
                res.base_runs[run] = mb / (now_s() - t0);
                if (q.f)
                    fclose(q.f);
                qsd_stop();
            }
            if (r < 0)
                return r;
        }
        logf_("nbd_bgcopy run %u: pitcopy %.0f MB/s, blockdev-backup %.0f MB/s", run,
              res.runs[run], res.base_runs[run]);
    }
    unlink(c.scratch);
    res.nruns = res.nbase = c.runs;
    detail_str(&res, "baseline_is", "qemu-storage-daemon blockdev-backup sync=full, QMP to concluded");
    detail_num(&res, "size_bytes", (double)c.size);
    emit(b, &res, 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * serve_rss: 16 sparse 1 TiB volumes, 8 started nocopy mappings. */

/* A "Vm...:  N kB" line of /proc/PID/status, in MiB. */
static double status_mib(pid_t pid, const char *key)
{
    char path[64], line[256];
    double kb = NAN;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return NAN;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0 && line[strlen(key)] == ':')
            kb = strtod(line + strlen(key) + 1, NULL);
    fclose(f);
    return kb / 1024;
}

static double rss_mib(pid_t pid)
{
    return status_mib(pid, "VmRSS");
}

#define RSS_VOLS 16u
#define RSS_MAPS 8u

int bench_serve_rss(struct bench *b)
{
    struct nbd_ctx c;
    memset(&c, 0, sizeof c);
    int r = find_pitcopy(b);
    if (r < 0)
        return r;
    if (!b->shm[0] && (r = make_dir(b, "/dev/shm", b->shm)) < 0)
        return r;
    char files[RSS_VOLS][PATH_LEN], name[32], tname[32], mname[32], grain_s[32];
    snprintf(grain_s, sizeof grain_s, "%u", NBD_GRAIN);
    if ((r = pc_serve_start(b, &c)) < 0)
        return r;
    pid_t pid = daemons[0];
    double rss0 = rss_mib(pid), rss_vols = NAN, rss_maps = NAN, rss_end = NAN;
    for (unsigned i = 0; r == 0 && i < RSS_VOLS; i++) {
        char fn[32];
        snprintf(fn, sizeof fn, "v%02u.raw", i);
        bench_path(b->shm, fn, files[i]);
        unlink(files[i]);
        snprintf(name, sizeof name, "v%02u", i);
        r = pc_cli(b, NULL, "volume", "create", name, "--size", "1T", "--file", files[i], NULL);
    }
    rss_vols = rss_mib(pid);
    for (unsigned i = 0; r == 0 && i < RSS_MAPS; i++) {
        snprintf(name, sizeof name, "v%02u", i);
        snprintf(tname, sizeof tname, "v%02u", i + RSS_MAPS);
        snprintf(mname, sizeof mname, "m%u", i);
        r = pc_cli(b, NULL, "map", "create", name, tname, "--name", mname, "--grain", grain_s,
                   "--copy-rate", "0", NULL);
        if (r == 0)
            r = pc_cli(b, NULL, "map", "start", mname, NULL);
    }
    rss_maps = rss_mib(pid);
    /* a little data on every volume: 1 MiB at 0 and 64 KiB at 512 GiB (sources split grains) */
    for (unsigned i = 0; r == 0 && i < RSS_VOLS; i++) {
        char uri[PATH_LEN + 64];
        snprintf(uri, sizeof uri, "nbd+unix:///v%02u?socket=%s", i, c.pc_sock);
        char *argv[] = { "qemu-io", "-f", "raw", uri, "-c", "write -P 0x5a 0 1M",
                         "-c", "write -P 0xa5 512G 64k", NULL };
        char *out = NULL;
        int st = run_cmd(b, argv, &out);
        free(out);
        if (st != 0)
            r = fail(b, st < 0 ? st : -EIO, "qemu-io write to %s: exit status %d", uri, st);
    }
    usleep(200000);
    rss_end = rss_mib(pid);
    double pinned = status_mib(pid, "VmPin"), anon = status_mib(pid, "RssAnon");
    pc_serve_stop(b);
    for (unsigned i = 0; i < RSS_VOLS; i++)
        if (files[i][0])
            unlink(files[i]);
    if (r < 0)
        return r;

    double grains = (double)(1 * TiB / NBD_GRAIN);
    double bound = RSS_MAPS * grains * 2 / 8 / MiB + 256;
    logf_("serve_rss: %.1f MiB idle, %.1f with 16 volumes, %.1f with 8 started maps, "
          "%.1f after writes; bound %.1f MiB", rss0, rss_vols, rss_maps, rss_end, bound);
    struct result res = result_new("serve_rss", "MiB", 1.0, "<=");
    res.runs[0] = rss_end;
    res.base_runs[0] = bound;
    res.nruns = res.nbase = 1;
    res.unpaired = true;
    res.ratio = rss_end / bound;
    detail_str(&res, "ratio_is", "RSS / (8 maps x 2 bits x 2^24 grains + 256 MiB)");
    detail_num(&res, "rss_idle_mib", rss0);
    detail_num(&res, "rss_16_volumes_mib", rss_vols);
    detail_num(&res, "rss_8_started_maps_mib", rss_maps);
    detail_num(&res, "vm_pin_mib", pinned);
    detail_num(&res, "rss_anon_mib", anon);
    detail_num(&res, "volumes", RSS_VOLS);
    detail_num(&res, "maps", RSS_MAPS);
    detail_num(&res, "volume_bytes", (double)TiB);
    emit(b, &res, 0);
    return 0;
}
