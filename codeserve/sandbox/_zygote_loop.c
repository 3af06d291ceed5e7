/* The sandbox zygote's job loop in C: the same steps as Zygote.serve/run in codeserve/sandbox/zygote.py,
 * which remains the fallback when this module is not built (and the only path without a PID
 * namespace).
 *
 * Why C: after fork, each page the zygote writes (while its child lives, or after) costs a page
 * fault, and Python writes to many: every object it touches has its reference count changed.
 * The Python loop wrote ~200 pages and ran ~0.2 ms of bytecode per candidate; this loop creates
 * no Python object in the zygote on the common path (a job in, "passed" out), and sets up the
 * child (rlimits, privileges, descriptors) before it runs any Python either. In the child, it
 * also runs an exec job's harness-compiled program and tests itself (run_exec), and reports a
 * silent pass, leaving Python only the verdicts to judge.
 *
 * Frames in (codeserve/sandbox/frames.py REQUEST): n_json, n_blob, n_tests, n_code, n_program_code (u32),
 * op (u8), timeout (f64), memory_mb, cap, n_limits (u32), all big-endian; then JSON, blob,
 * tests, code, program code and n_limits f64. For a candidate (op > 0), blob is its program,
 * tests its task's checking code, and code and program code those two compiled by the
 * harness; the limits are a call job's per-input time limits; a control frame (op 0) has JSON
 * and a blob. Frames out: HEADER (n_json, n_blob: u32) + JSON + blob.
 *
 * Only an in-process "exec" job's report can be turned into "passed" here (and that verdict
 * mode is forgeable, kept behind a flag). A call job's records are relayed as they are, with
 * how its process ended: the harness compares its outputs with expected ones it never sends
 * (codeserve/sandbox/calls.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <marshal.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define REQUEST_SIZE 41
#define OP_CONTROL 0
#define OP_EXEC 1 /* frames.OPS["exec"] */
#define OP_CALL 4 /* frames.OPS["call"] */
#define MAX_TESTS 8 /* compiled checking code kept: as MAX_COMPILED_TESTS in zygote.py */
#define IN_MIN (1 << 16)  /* input buffer: its usual size */
#define IN_KEEP (1 << 20) /* and the most it keeps between frames */

typedef struct {
    const char *workdir, *scratch;
    int devnull, uid, drop_uid, memory_mb;
    long long file_size, open_files, max_procs;
    const char *passed;  /* a child's pre-encoded "passed" report */
    Py_ssize_t passed_len;
    PyObject *capture;   /* the CappedWriter candidates print into (borrowed) */
} Config;

typedef struct {
    char *text;
    size_t len;
    PyObject *code;  /* a code object, or None when the tests do not compile alone */
} Tests;

/* Input buffer over fd 0: jobs arrive pipelined, so bytes past one frame belong to the next. */
static char *in_buf;
static size_t in_start, in_end, in_size;
typedef struct {
    Tests slots[MAX_TESTS];
    int next;
} Cache;

/* Compiled checking code (exec jobs, in-process verdicts) and call jobs' inline cases (their
 * inputs: calls.CallCase), each by the text the harness sent: loaded once per task. */
static Cache tests_cache, cases_cache;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static double be_double(const unsigned char *p) {
    uint64_t bits = (uint64_t)be32(p) << 32 | be32(p + 4);
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Make `n` bytes available at in_buf + in_start; 0 at end of input (or on error). */
static int fill(size_t n) {
    if (in_end - in_start >= n) return 1;
    if (in_start == in_end && in_size > IN_KEEP && n <= IN_KEEP) {
        /* A big frame (a Plus bundle) went through: give its memory back, or every later fork
         * would copy the page table of a buffer nobody reads. */
        free(in_buf);
        in_buf = NULL;
        in_start = in_end = in_size = 0;
    }
    if (in_start > 0) {
        memmove(in_buf, in_buf + in_start, in_end - in_start);
        /* No stale copy of a job stays behind for a later candidate's fork to inherit. */
        memset(in_buf + in_end - in_start, 0, in_start);
        in_end -= in_start;
        in_start = 0;
    }
    if (n > in_size) {
        size_t want = n > 2 * in_size ? n : 2 * in_size;
        if (want < IN_MIN) want = IN_MIN;
        char *grown = realloc(in_buf, want);
        if (grown == NULL) return 0;
        in_buf = grown;
        in_size = want;
    }
    while (in_end < n) {
        ssize_t got = read(0, in_buf + in_end, in_size - in_end);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return 0;
        in_end += (size_t)got;
    }
    return 1;
}

static int write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t done = write(fd, data, len);
        if (done < 0 && errno == EINTR) continue;
        if (done <= 0) return -1;
        data += done;
        len -= (size_t)done;
    }
    return 0;
}

/* From PID 1: every other process of the namespace dies, and is reaped. */
static void kill_everything(void) {
    if (kill(-1, SIGKILL) == 0) {
        while (waitpid(-1, NULL, 0) > 0) {
        }
    }
}

/* Append what fits under `cap` to a growing buffer; -1 when out of memory. */
static int append(char **buf, size_t *len, size_t *size, const char *chunk, size_t n,
                  size_t cap) {
    if (*len >= cap) return 0;
    if (n > cap - *len) n = cap - *len;
    if (*len + n > *size) {
        size_t want = (*len + n) * 2;
        char *grown = realloc(*buf, want);
        if (grown == NULL) return -1;
        *buf = grown;
        *size = want;
    }
    memcpy(*buf + *len, chunk, n);
    *len += n;
    return 0;
}

/* Whether a directory holds anything (errors count as "yes": let Python look). */
static int has_entries(const char *path) {
    DIR *dir = opendir(path);
    if (dir == NULL) return 1;
    struct dirent *entry;
    int found = 0;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            found = 1;
            break;
        }
    }
    closedir(dir);
    return found;
}

static long long address_space(void) {
    /* As Zygote._limits: the candidate's RLIMIT_AS is our size plus its memory budget. */
    FILE *f = fopen("/proc/self/statm", "r");
    long long pages = 0;
    if (f != NULL) {
        if (fscanf(f, "%lld", &pages) != 1) pages = 0;
        fclose(f);
    }
    return pages * sysconf(_SC_PAGESIZE);
}

/* What `text` loads to (new reference): for the checking code, the compiled code the zygote's
 * Python loads from the harness's `arg` (load_tests); for a call job's case, the CallCase it
 * decodes from the text itself (load_case). Loaded on first sight; NULL with an exception set
 * if that call failed. */
static PyObject *cached(Cache *cache, PyObject *zygote, const char *method, const char *text,
                        size_t len, const char *arg, size_t arg_len) {
    if (len == 0) Py_RETURN_NONE;
    for (int i = 0; i < MAX_TESTS; i++) {
        Tests *t = &cache->slots[i];
        if (t->text != NULL && t->len == len && memcmp(t->text, text, len) == 0) {
            Py_INCREF(t->code);
            return t->code;
        }
    }
    PyObject *loaded = PyObject_CallMethod(zygote, method, "y#", arg, (Py_ssize_t)arg_len);
    if (loaded == NULL) return NULL;
    char *copy = malloc(len);
    if (copy == NULL) return loaded;  /* works, just not cached */
    memcpy(copy, text, len);
    Tests *slot = &cache->slots[cache->next];
    cache->next = (cache->next + 1) % MAX_TESTS;
    free(slot->text);
    Py_XDECREF(slot->code);
    slot->text = copy;
    slot->len = len;
    slot->code = loaded;
    Py_INCREF(loaded);
    return loaded;
}

/* The candidate's side of the fork, before any Python runs: its own process group, no stdio,
 * its working directory, rlimits, no privileges. Returns why it failed, or NULL. */
static const char *setup_child(const Config *cfg, double timeout, long long memory_mb,
                               long long vm_bytes, char *why, size_t why_len) {
    const char *step = NULL;
    /* Its own process group, so kill(0, ...) cannot reach the worker outside our namespace
     * (not setsid: a session costs a scheduler autogroup per candidate). */
    if (setpgid(0, 0) != 0) step = "setpgid";
    for (int fd = 0; fd < 3 && step == NULL; fd++) {
        if (dup2(cfg->devnull, fd) < 0) step = "dup2";
    }
    if (step == NULL && chdir(cfg->workdir) != 0) step = "chdir";
    if (step == NULL) {
        long long as = vm_bytes + (memory_mb << 20);
        long long cpu = (long long)ceil(timeout) + 1;
        struct { int resource; long long soft, hard; } limits[] = {
            {RLIMIT_AS, as, as},
            {RLIMIT_CPU, cpu, cpu + 1}, /* SIGXCPU first, SIGKILL a second later */
            {RLIMIT_FSIZE, cfg->file_size, cfg->file_size},
            {RLIMIT_NOFILE, cfg->open_files, cfg->open_files},
            {RLIMIT_CORE, 0, 0},
            {RLIMIT_NPROC, cfg->max_procs, cfg->max_procs},
        };
        for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
            struct rlimit rl = {(rlim_t)limits[i].soft, (rlim_t)limits[i].hard};
            setrlimit(limits[i].resource, &rl); /* as in Python: a limit we cannot set is skipped */
        }
        if (cfg->drop_uid >= 0) {
            /* As root: become `drop_uid` (e.g. nobody); leaving uid 0 clears all capabilities. */
            if (setgroups(0, NULL) != 0) step = "setgroups";
            else if (setgid((gid_t)cfg->drop_uid) != 0) step = "setgid";
            else if (setuid((uid_t)cfg->drop_uid) != 0) step = "setuid";
        } else {
            /* Keep our uid, clear every capability (_LINUX_CAPABILITY_VERSION_3). */
            struct { uint32_t version; int pid; } header = {0x20080522, 0};
            uint32_t data[6] = {0};
            if (syscall(SYS_capset, &header, data) != 0) step = "capset";
        }
    }
    if (step == NULL) return NULL;
    snprintf(why, why_len, "sandbox setup failed: %s: %s", step, strerror(errno));
    return why;
}

/* An exec job's program and checking code, both compiled by the harness, run right here in the
 * candidate's process, as candidate_exec.execute runs them (fresh globals, output captured)
 * but without its Python calls around them, whose objects each cost the candidate a
 * copy-on-write fault (~40 a candidate). A silent pass is reported and exits here. Returns 0
 * if the job could not start (an error is set), else 1 with *raised set to what the program
 * or tests raised (NULL if nothing: it printed), for Python to judge. Globals and program are
 * left to die with the process: freeing them would run the candidate's __del__ methods. */
static int run_exec(const Config *cfg, int report_fd, const char *program_code,
                    size_t n_program_code, PyObject *tests_code, PyObject **raised) {
    if (PySys_SetObject("stdout", cfg->capture) != 0 ||
        PySys_SetObject("stderr", cfg->capture) != 0)
        return 0;
    PyObject *program = PyMarshal_ReadObjectFromString(program_code, (Py_ssize_t)n_program_code);
    PyObject *globals = PyDict_New();
    if (program == NULL || globals == NULL ||
        PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) != 0) {
        Py_XDECREF(program), Py_XDECREF(globals);
        return 0;
    }
    PyObject *done = PyEval_EvalCode(program, globals, globals);
    if (done != NULL && tests_code != Py_None) {
        Py_DECREF(done);
        done = PyEval_EvalCode(tests_code, globals, globals);
    }
    *raised = NULL;
    if (done == NULL) {
        PyObject *type, *tb;
        PyErr_Fetch(&type, raised, &tb);
        PyErr_NormalizeException(&type, raised, &tb);
        if (tb != NULL && *raised != NULL) PyException_SetTraceback(*raised, tb);
        Py_XDECREF(type), Py_XDECREF(tb);
        return 1;
    }
    Py_DECREF(done);
    PyObject *size = PyObject_GetAttrString(cfg->capture, "size");
    long printed = size == NULL ? -1 : PyLong_AsLong(size);
    Py_XDECREF(size);
    PyErr_Clear();
    if (printed == 0 && write_all(report_fd, cfg->passed, (size_t)cfg->passed_len) == 0)
        _exit(0);
    return 1;
}

/* Wait for the child at most until `deadline`, reading its report (at most `cap` bytes). With
 * per-input `limits` (a call job: n_limits big-endian f64), input k must be answered within
 * limits[k] of the record before it (records are u32 length + body: the first says the program
 * is ready, then one per input; codeserve/sandbox/calls.py): *late says the child was killed
 * for that. */
static int supervise(pid_t pid, int rfd, double deadline, size_t cap, const unsigned char *limits,
                     size_t n_limits, char **data, size_t *len, int *status, int *late) {
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    size_t size = 0, parsed = 0, records = 0;
    int timed_out = 1, oom = 0;
    double due = deadline;
    *late = 0;
    static char chunk[1 << 16];
    struct pollfd polled[3] = {
        {.fd = 0, .events = 0}, /* the harness: a hang-up means it died */
        {.fd = pidfd, .events = POLLIN},
        {.fd = rfd, .events = POLLIN},
    };
    for (;;) {
        double remaining = due - now();
        if (remaining <= 0) {
            *late = due < deadline;
            break;
        }
        int ms = remaining > 60 ? 60000 : (int)(remaining * 1000);
        if (pidfd < 0 && ms > 10) ms = 10; /* no pidfd (old kernel): look every 10 ms */
        int n = poll(polled, 3, ms < 1 ? 1 : ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (polled[0].revents) {
            kill_everything();
            _exit(1);
        }
        int exited = pidfd >= 0 ? polled[1].revents != 0 && waitpid(pid, status, 0) == pid
                                : waitpid(pid, status, WNOHANG) == pid;
        if (exited) {
            timed_out = 0;
            break;
        }
        if (polled[2].revents) {
            ssize_t got = read(rfd, chunk, sizeof chunk);
            if (got > 0) {
                oom |= append(data, len, &size, chunk, (size_t)got, cap);
            } else if (got == 0 || errno != EINTR) {
                polled[2].fd = -1; /* end of the report: poll skips negative fds */
            }
            if (n_limits > 0) {
                size_t before = records;
                while (*len - parsed >= 4) {
                    size_t end = parsed + 4 + be32((const unsigned char *)*data + parsed);
                    if (end > *len || end < parsed) break;
                    parsed = end;
                    records++;
                }
                if (records != before) { /* records - 1 inputs answered: time the next one */
                    size_t k = records - 1;
                    due = deadline;
                    if (k < n_limits) {
                        double limit = be_double(limits + 8 * k);
                        if (limit >= 0 && now() + limit < deadline) due = now() + limit;
                    }
                }
            }
        }
    }
    kill_everything(); /* the candidate itself on timeout, and whatever it left behind */
    if (!timed_out) {  /* nobody holds the pipe any more: read the rest */
        fcntl(rfd, F_SETFL, O_NONBLOCK);
        ssize_t got;
        while ((got = read(rfd, chunk, sizeof chunk)) > 0) {
            oom |= append(data, len, &size, chunk, (size_t)got, cap);
        }
    }
    if (pidfd >= 0) close(pidfd);
    return oom ? -1 : timed_out;
}

static int run_calls(const Config *cfg, PyObject *zygote, PyObject *inline_case, int report_fd,
                     const char *program_code, size_t n_program_code, const char *extra,
                     size_t n_extra, int timed, const char *program, size_t n_program);

static int parse_config(PyObject *args, PyObject **zygote, Config *cfg) {
    return PyArg_ParseTuple(args, "Ossiiiy#LLLO", zygote, &cfg->workdir, &cfg->scratch,
                            &cfg->devnull, &cfg->uid, &cfg->memory_mb, &cfg->passed,
                            &cfg->passed_len, &cfg->file_size, &cfg->open_files,
                            &cfg->max_procs, &cfg->capture);
}

PyDoc_STRVAR(serve_doc,
"serve(zygote, workdir, scratch, devnull, uid, memory_mb, passed_report, file_size, open_files,\n"
"      max_procs, capture) -> None | tuple\n\n"
"Run jobs from stdin until it ends or a control frame says stop. Returns None in the zygote;\n"
"in each forked candidate it returns (report_fd, op, plus_json or None, program, tests,\n"
"tests_code, program_code, setup_failure, ran, timed), where ran is None, or (exception or\n"
"None,) when the program already ran (an exec job: see run_exec), and timed says whether a\n"
"call job's inputs have time limits.\n"
"Calls back into `zygote` for what is rare: control(json, blob) -> bool, load_tests(code)\n"
"and wipe().");

static PyObject *serve(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *zygote;
    Config cfg;
    if (!parse_config(args, &zygote, &cfg)) return NULL;
    cfg.drop_uid = cfg.uid >= 0 && (uid_t)cfg.uid != geteuid() ? cfg.uid : -1;
    long long vm_bytes = address_space();
    char why[256];
    for (;;) {
        if (!fill(REQUEST_SIZE)) Py_RETURN_NONE;
        const unsigned char *head = (const unsigned char *)in_buf + in_start;
        size_t n_json = be32(head), n_blob = be32(head + 4), n_tests = be32(head + 8),
               n_code = be32(head + 12), n_program_code = be32(head + 16);
        int op = head[20];
        double timeout = be_double(head + 21);
        if (!(timeout >= 0)) timeout = 0;  /* NaN too */
        if (timeout > 1e7) timeout = 1e7;  /* ~4 months: keeps every conversion below defined */
        long long memory_mb = be32(head + 29);
        size_t cap = be32(head + 33);
        size_t n_limits = be32(head + 37);
        size_t size = REQUEST_SIZE + n_json + n_blob + n_tests + n_code + n_program_code +
                      8 * n_limits;
        if (!fill(size)) Py_RETURN_NONE;
        size_t frame_start = in_start;
        const char *json = in_buf + in_start + REQUEST_SIZE, *blob = json + n_json,
                   *tests = blob + n_blob, *compiled = tests + n_tests,
                   *program_code = compiled + n_code;
        const unsigned char *limits = (const unsigned char *)program_code + n_program_code;
        in_start += size;

        if (op == OP_CONTROL) {
            PyObject *go = PyObject_CallMethod(zygote, "control", "y#y#", json,
                                               (Py_ssize_t)n_json, blob, (Py_ssize_t)n_blob);
            if (go == NULL) return NULL;
            int more = PyObject_IsTrue(go);
            Py_DECREF(go);
            if (more <= 0) return more < 0 ? NULL : Py_NewRef(Py_None);
            vm_bytes = address_space(); /* a bundle loaded: we are bigger */
            continue;
        }
        /* For a call job, "tests" is its case (inputs only) when sent inline: the code slot
         * carries the loaded CallCase. */
        PyObject *code = op == OP_CALL
            ? cached(&cases_cache, zygote, "load_case", tests, n_tests, tests, n_tests)
            : cached(&tests_cache, zygote, "load_tests", tests, n_tests, compiled, n_code);
        if (code == NULL) return NULL;
        int made = mkdir(cfg.workdir, 0700) == 0;
        if (!made) { /* left over from a job that crashed its cleanup */
            PyObject *r = PyObject_CallMethod(zygote, "wipe", NULL);
            if (r == NULL) return Py_DECREF(code), NULL;
            Py_DECREF(r);
            made = mkdir(cfg.workdir, 0700) == 0; /* if not (a full tmpfs): chdir fails below */
        }
        if (made && cfg.uid >= 0 && chown(cfg.workdir, (uid_t)cfg.uid, (gid_t)cfg.uid) != 0) {
            Py_DECREF(code);
            return PyErr_SetFromErrnoWithFilename(PyExc_OSError, cfg.workdir);
        }
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0) return Py_DECREF(code), PyErr_SetFromErrno(PyExc_OSError);
        double started = now();
        PyOS_BeforeFork();
        pid_t pid = fork();
        if (pid == 0) {
            PyOS_AfterFork_Child();
            close(fds[0]);
            /* The jobs queued behind this one (other candidates' programs) are not this
             * candidate's to read: gone from its copy of the buffer before any of its code runs. */
            memset(in_buf + in_start, 0, in_end - in_start);
            const char *failed = setup_child(&cfg, timeout, memory_mb ? memory_mb : cfg.memory_mb,
                                             vm_bytes, why, sizeof why);
            PyObject *ran = Py_NewRef(Py_None); /* not run: Python's execute runs it */
            PyObject *raised = NULL;
            if (failed == NULL && op == OP_CALL &&
                !run_calls(&cfg, zygote, code, fds[1], program_code, n_program_code, json, n_json,
                           n_limits > 0, blob, n_blob)) {
                PyErr_Clear(); /* not runnable here: Python's run_calls does it */
            }
            if (failed == NULL && op == OP_EXEC && n_program_code > 0 &&
                (n_tests == 0 || code != Py_None)) {
                if (run_exec(&cfg, fds[1], program_code, n_program_code, code, &raised)) {
                    Py_DECREF(ran);
                    /* Once started, never again: if this fails, we exit without a verdict. */
                    ran = PyTuple_Pack(1, raised != NULL ? raised : Py_None);
                    Py_XDECREF(raised);
                    if (ran == NULL) return Py_DECREF(code), NULL;
                } else {
                    PyErr_Clear();
                }
            }
            /* Only now, and only what the candidate needs, as Python objects. */
            PyObject *extra = n_json ? PyBytes_FromStringAndSize(json, (Py_ssize_t)n_json)
                                     : Py_NewRef(Py_None);
            PyObject *program = PyUnicode_DecodeUTF8(blob, (Py_ssize_t)n_blob, "surrogatepass");
            /* (a call job's "tests" is its case, already loaded: passed as `code`) */
            PyObject *checks = op == OP_CALL ? PyUnicode_FromStringAndSize("", 0)
                : PyUnicode_DecodeUTF8(tests, (Py_ssize_t)n_tests, "surrogatepass");
            PyObject *marshalled =
                PyBytes_FromStringAndSize(program_code, (Py_ssize_t)n_program_code);
            if (extra == NULL || program == NULL || checks == NULL || marshalled == NULL) {
                Py_XDECREF(extra), Py_XDECREF(program), Py_XDECREF(checks);
                Py_XDECREF(marshalled), Py_DECREF(code), Py_XDECREF(ran);
                return NULL;
            }
            return Py_BuildValue("iiNNNNNzNi", fds[1], op, extra, program, checks, code,
                                 marshalled, failed, ran, n_limits > 0);
        }
        int fork_errno = errno;
        PyOS_AfterFork_Parent();
        Py_DECREF(code);
        close(fds[1]);
        if (pid < 0) {
            close(fds[0]);
            errno = fork_errno;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        char *data = NULL;
        size_t len = 0;
        int status = -1, late = 0;
        int timed_out = supervise(pid, fds[0], started + timeout, cap, limits, n_limits, &data,
                                  &len, &status, &late);
        close(fds[0]);
        memset(in_buf + frame_start, 0, size); /* this job's bytes, now that its child is gone */
        if (rmdir(cfg.workdir) != 0 || has_entries(cfg.scratch)) {
            PyObject *r = PyObject_CallMethod(zygote, "wipe", NULL);
            if (r == NULL) return free(data), NULL;
            Py_DECREF(r);
        }
        double elapsed = now() - started;
        if (timed_out < 0) {
            free(data);
            return PyErr_NoMemory();
        }
        /* Replies as the Python loop writes them: "passed", or the report as it is, with how
         * the child ended, for the harness to judge (codeserve/sandbox/verdicts.py). */
        char reply[200];
        int passed = op == OP_EXEC && !timed_out && (Py_ssize_t)len == cfg.passed_len &&
                     memcmp(data, cfg.passed, len) == 0;
        int body = passed
            ? snprintf(reply + 8, sizeof reply - 8,
                       "{\"status\": \"passed\", \"elapsed_s\": %.6f}", elapsed)
            : snprintf(reply + 8, sizeof reply - 8,
                       "{\"wait_status\": %d, \"timed_out\": %s, \"input_timeout\": %s, "
                       "\"elapsed_s\": %.6f}", status, timed_out ? "true" : "false",
                       late ? "true" : "false", elapsed);
        if (passed) len = 0;
        uint32_t lengths[2] = {htonl((uint32_t)body), htonl((uint32_t)len)};
        memcpy(reply, lengths, 8);
        int failed = write_all(1, reply, 8 + (size_t)body) != 0 || write_all(1, data, len) != 0;
        free(data);
        if (failed) Py_RETURN_NONE; /* the harness is gone */
    }
}

/* SHA-256 (FIPS 180-4), for outputs too big to send: they travel as their digest. */
typedef struct {
    uint32_t h[8];
    uint64_t total;
    unsigned char block[64];
    size_t used;
} Sha256;

static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_init(Sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->total = 0;
    s->used = 0;
}

static void sha_block(Sha256 *s, const unsigned char *p) {
    uint32_t w[64], a, b, c, d, e, f, g, h;
    for (int i = 0; i < 16; i++) w[i] = be32(p + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) +
                      SHA_K[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d;
    s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha_update(Sha256 *s, const unsigned char *p, size_t n) {
    s->total += n;
    if (s->used) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, take);
        s->used += take, p += take, n -= take;
        if (s->used < 64) return;
        sha_block(s, s->block);
        s->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha_block(s, p);
    memcpy(s->block, p, n);
    s->used = n;
}

static void sha_final(Sha256 *s, unsigned char out[32]) {
    uint64_t bits = s->total * 8;
    unsigned char pad[72] = {0x80};
    size_t n = (s->used < 56 ? 56 : 120) - s->used;
    for (int i = 0; i < 8; i++) pad[n + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha_update(s, pad, n + 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(s->h[i] >> 24), out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(s->h[i] >> 8), out[4 * i + 3] = (unsigned char)s->h[i];
    }
}

/* ---- Values: a candidate's outputs as plain data (codeserve/sandbox/values.py) -----------------
 *
 * A call job's candidate returns outputs that the harness compares with the expected ones, so
 * they cross a process boundary as bytes. Only plain data is encoded, checked by exact type all
 * the way down: None, bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set,
 * frozenset, and collections' Counter, OrderedDict, defaultdict and deque (by identity of the
 * type objects the zygote imported before any candidate ran), plus numpy's scalar types (their
 * builtin value, from their own C `item`). Anything else (a user-defined class, a subclass of a
 * builtin that could lie in __eq__ or __hash__, a generator) is refused with a reason. Nothing here
 * calls the value's own methods (no __eq__, __hash__, __iter__, __len__, __reduce__): lists,
 * tuples and dicts are read through the C API, sets and deques through their C iterators. A
 * recursive or absurdly deep value stops at VALUE_MAX_DEPTH, a huge one (or one that shares
 * itself exponentially) at the byte or node budget.
 *
 * Tags: N T F; i int64; I big int (u32 n, hex digits); f float; c complex (IEEE 754 big-endian);
 * s str (u32 n, UTF-8 with surrogates passed); b bytes; a bytearray; l list; t tuple; e set;
 * z frozenset; Q deque (u32 n, items); d dict; C Counter; O OrderedDict; D defaultdict (u32 n,
 * key and value pairs). The decoder (the harness's side) checks every length against what is
 * left, so no input can make it allocate more than its own size warrants.
 *
 * A value whose encoding passes `inline_max` bytes is streamed into a SHA-256 instead of kept
 * (Mbpp/255's outputs reach ~1.2 GB): what travels is its size and digest.
 */
#define VALUE_MAX_DEPTH 512

static PyObject *counter_type, *ordered_type, *defaultdict_type, *deque_type;

typedef struct {
    char *data;
    size_t len, size, cap; /* cap: bytes in all, streamed or not */
    int depth;
    size_t nodes, max_nodes;
    PyObject *refusal; /* why the value cannot be encoded (a str), when that is the failure */
    size_t inline_max, flushed; /* past inline_max, data is hashed in chunks: flushed so far */
    int hashing;
    Sha256 sha;
} Enc;

#define HASH_CHUNK (1 << 20)

static int refuse(Enc *e, const char *format, ...) {
    va_list args;
    va_start(args, format);
    Py_XDECREF(e->refusal);
    e->refusal = PyUnicode_FromFormatV(format, args);
    va_end(args);
    return -1;
}

static int enc_put(Enc *e, const void *p, size_t n) {
    if (n > e->cap - e->len - e->flushed)
        return refuse(e, "output larger than %zu bytes when serialised", e->cap);
    if (!e->hashing && e->len + n > e->inline_max) {
        e->hashing = 1;
        sha_init(&e->sha);
    }
    if (e->hashing && e->len + n > HASH_CHUNK) {
        sha_update(&e->sha, (const unsigned char *)e->data, e->len);
        e->flushed += e->len;
        e->len = 0;
        if (n > HASH_CHUNK) {
            sha_update(&e->sha, p, n);
            e->flushed += n;
            return 0;
        }
    }
    if (e->len + n > e->size) {
        size_t want = e->size ? e->size : 256;
        while (want < e->len + n) want *= 2;
        char *grown = PyMem_Realloc(e->data, want);
        if (grown == NULL) return PyErr_NoMemory(), -1;
        e->data = grown;
        e->size = want;
    }
    memcpy(e->data + e->len, p, n);
    e->len += n;
    return 0;
}

static int enc_tag_len(Enc *e, char tag, size_t n) {
    unsigned char head[5] = {(unsigned char)tag, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
                             (unsigned char)(n >> 8), (unsigned char)n};
    if (n > 0xFFFFFFFFu) return refuse(e, "output has a part of more than 2**32 items or bytes");
    return enc_put(e, head, 5);
}

static int enc_double(Enc *e, double x) {
    uint64_t bits;
    unsigned char out[8];
    memcpy(&bits, &x, sizeof bits);
    for (int i = 7; i >= 0; i--, bits >>= 8) out[i] = (unsigned char)bits;
    return enc_put(e, out, 8);
}

static int enc_value(Enc *e, PyObject *v);

static int enc_items(Enc *e, char tag, PyObject *v, int pairs) {
    /* Containers: lists and tuples by index, dicts by their entries, the rest by their own C
     * iterators (exact types only, so no Python code runs). */
    if (++e->depth > VALUE_MAX_DEPTH)
        return refuse(e, "output nested deeper than %d levels (or containing itself)",
                      VALUE_MAX_DEPTH);
    int rc = 0;
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        rc = enc_tag_len(e, tag, (size_t)n);
        for (Py_ssize_t i = 0; rc == 0 && i < PySequence_Fast_GET_SIZE(v); i++)
            rc = enc_value(e, PySequence_Fast_GET_ITEM(v, i));
    } else if (pairs && !Py_IS_TYPE(v, (PyTypeObject *)ordered_type)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        rc = enc_tag_len(e, tag, (size_t)PyDict_GET_SIZE(v));
        while (rc == 0 && PyDict_Next(v, &pos, &key, &value)) {
            Py_INCREF(key), Py_INCREF(value);
            rc = enc_value(e, key) || enc_value(e, value) ? -1 : 0;
            Py_DECREF(key), Py_DECREF(value);
        }
    } else {
        Py_ssize_t n = PyObject_Size(v); /* set, frozenset, deque, OrderedDict: C lengths */
        PyObject *it = n < 0 ? NULL : PyObject_GetIter(v);
        rc = it == NULL ? -1 : enc_tag_len(e, tag, (size_t)n);
        PyObject *item;
        Py_ssize_t seen = 0;
        while (rc == 0 && (item = PyIter_Next(it)) != NULL) {
            seen++;
            rc = enc_value(e, item);
            if (rc == 0 && pairs) {
                PyObject *value = PyDict_GetItemWithError(v, item); /* key checked: plain */
                rc = value == NULL ? -1 : enc_value(e, value);
            }
            Py_DECREF(item);
        }
        if (rc == 0 && PyErr_Occurred()) rc = -1;
        if (rc == 0 && seen != n) rc = refuse(e, "output changed while it was serialised");
        Py_XDECREF(it);
    }
    e->depth--;
    return rc;
}

static int enc_value(Enc *e, PyObject *v) {
    if (++e->nodes > e->max_nodes)
        return refuse(e, "output has more than %zu parts", e->max_nodes);
    PyTypeObject *type = Py_TYPE(v);
    if (v == Py_None) return enc_put(e, "N", 1);
    if (v == Py_True) return enc_put(e, "T", 1);
    if (v == Py_False) return enc_put(e, "F", 1);
    if (type == &PyLong_Type) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (!overflow) {
            unsigned char out[9] = {'i'};
            uint64_t bits = (uint64_t)x;
            for (int i = 8; i >= 1; i--, bits >>= 8) out[i] = (unsigned char)bits;
            return enc_put(e, out, 9);
        }
        PyObject *hex = PyNumber_ToBase(v, 16); /* "0x1f" or "-0x1f": linear, unlike decimal */
        if (hex == NULL) return -1;
        Py_ssize_t n;
        const char *text = PyUnicode_AsUTF8AndSize(hex, &n);
        int rc = -1;
        if (text != NULL) {
            int negative = text[0] == '-';
            const char *digits = text + (negative ? 3 : 2);
            size_t count = (size_t)n - (negative ? 3 : 2);
            rc = enc_tag_len(e, 'I', count + (size_t)negative);
            if (rc == 0 && negative) rc = enc_put(e, "-", 1);
            if (rc == 0) rc = enc_put(e, digits, count);
        }
        Py_DECREF(hex);
        return rc;
    }
    if (type == &PyFloat_Type) return enc_put(e, "f", 1) || enc_double(e, PyFloat_AS_DOUBLE(v));
    if (type == &PyComplex_Type) {
        Py_complex z = ((PyComplexObject *)v)->cval;
        return enc_put(e, "c", 1) || enc_double(e, z.real) || enc_double(e, z.imag);
    }
    if (type == &PyUnicode_Type) {
        if (PyUnicode_IS_ASCII(v)) {
            size_t n = (size_t)PyUnicode_GET_LENGTH(v);
            return enc_tag_len(e, 's', n) || enc_put(e, PyUnicode_DATA(v), n);
        }
        PyObject *utf8 = PyUnicode_AsEncodedString(v, "utf-8", "surrogatepass");
        if (utf8 == NULL) return -1;
        size_t n = (size_t)PyBytes_GET_SIZE(utf8);
        int rc = enc_tag_len(e, 's', n) || enc_put(e, PyBytes_AS_STRING(utf8), n);
        Py_DECREF(utf8);
        return rc;
    }
    if (type == &PyBytes_Type) {
        size_t n = (size_t)PyBytes_GET_SIZE(v);
        return enc_tag_len(e, 'b', n) || enc_put(e, PyBytes_AS_STRING(v), n);
    }
    if (type == &PyByteArray_Type) {
        size_t n = (size_t)PyByteArray_GET_SIZE(v);
        return enc_tag_len(e, 'a', n) || enc_put(e, PyByteArray_AS_STRING(v), n);
    }
    if (type == &PyList_Type) return enc_items(e, 'l', v, 0);
    if (type == &PyTuple_Type) return enc_items(e, 't', v, 0);
    if (type == &PyDict_Type) return enc_items(e, 'd', v, 1);
    if (type == &PySet_Type) return enc_items(e, 'e', v, 0);
    if (type == &PyFrozenSet_Type) return enc_items(e, 'z', v, 0);
    if (counter_type != NULL) {
        if (type == (PyTypeObject *)counter_type) return enc_items(e, 'C', v, 1);
        if (type == (PyTypeObject *)ordered_type) return enc_items(e, 'O', v, 1);
        if (type == (PyTypeObject *)defaultdict_type) return enc_items(e, 'D', v, 1);
        if (type == (PyTypeObject *)deque_type) return enc_items(e, 'Q', v, 0);
    }
    if (!(type->tp_flags & Py_TPFLAGS_HEAPTYPE) && strncmp(type->tp_name, "numpy.", 6) == 0 &&
        strcmp(type->tp_name, "numpy.ndarray") != 0) {
        /* A numpy scalar (a type of numpy's C code, not a class the program defined): its
         * builtin value, which is what == compares it by. */
        PyObject *item = PyObject_CallMethod(v, "item", NULL);
        if (item == NULL) {
            PyErr_Clear();
        } else {
            PyTypeObject *t = Py_TYPE(item);
            int rc = t == &PyLong_Type || t == &PyFloat_Type || t == &PyBool_Type ||
                     t == &PyComplex_Type || t == &PyUnicode_Type || t == &PyBytes_Type
                         ? enc_value(e, item) : refuse(e, "output of type %s cannot be compared "
                                                       "as plain data", type->tp_name);
            Py_DECREF(item);
            return rc;
        }
    }
    for (PyTypeObject *base = type->tp_base; base != NULL; base = base->tp_base) {
        if (base == &PyLong_Type || base == &PyFloat_Type || base == &PyUnicode_Type ||
            base == &PyBytes_Type || base == &PyList_Type || base == &PyTuple_Type ||
            base == &PyDict_Type || base == &PySet_Type || base == &PyFrozenSet_Type ||
            base == &PyComplex_Type || base == &PyByteArray_Type)
            return refuse(e, "output of type %s (a subclass of %s) cannot be compared safely: "
                          "only plain data can", type->tp_name, base->tp_name);
    }
    return refuse(e, "output of type %s cannot be compared safely: only plain data can (None, "
                  "bool, int, float, complex, str, bytes and lists, tuples, dicts and sets of "
                  "them)", type->tp_name);
}

PyDoc_STRVAR(encode_doc,
"encode(value, cap, max_nodes, inline_max) -> bytes | (size, sha256)\n\n"
"`value` as plain data (see the comment above it in _zygote_loop.c), or when its encoding is\n"
"longer than inline_max, that encoding's size and SHA-256 (it is streamed, never held);\n"
"ValueError with the reason when it is not plain data, nests too deep, or exceeds `cap`\n"
"bytes or `max_nodes` parts.");

static PyObject *py_encode(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *v;
    Py_ssize_t cap, max_nodes, inline_max;
    if (!PyArg_ParseTuple(args, "Onnn", &v, &cap, &max_nodes, &inline_max)) return NULL;
    Enc e = {NULL, 0, 0, (size_t)cap, 0, 0, (size_t)max_nodes, NULL, (size_t)inline_max, 0, 0,
             {{0}, 0, {0}, 0}};
    PyObject *out = NULL;
    if (enc_value(&e, v) != 0) {
        if (e.refusal != NULL) {
            PyErr_Clear();
            PyErr_SetObject(PyExc_ValueError, e.refusal);
            Py_DECREF(e.refusal);
        }
    } else if (!e.hashing) {
        out = PyBytes_FromStringAndSize(e.data, (Py_ssize_t)e.len);
    } else {
        unsigned char digest[32];
        sha_update(&e.sha, (const unsigned char *)e.data, e.len);
        sha_final(&e.sha, digest);
        out = Py_BuildValue("(Ky#)", (unsigned long long)(e.flushed + e.len), digest,
                            (Py_ssize_t)32);
    }
    PyMem_Free(e.data);
    return out;
}

typedef struct {
    const unsigned char *start, *p, *end;
    int depth;
} Dec;

static PyObject *malformed(Dec *d, const char *why) {
    PyErr_Format(PyExc_ValueError, "malformed value at byte %zd: %s", (Py_ssize_t)(d->p - d->start),
                 why);
    return NULL;
}

static PyObject *dec_value(Dec *d);

static PyObject *dec_value(Dec *d) {
    if (d->p >= d->end) return malformed(d, "truncated");
    char tag = (char)*d->p++;
    size_t left = (size_t)(d->end - d->p);
    switch (tag) {
    case 'N': Py_RETURN_NONE;
    case 'T': Py_RETURN_TRUE;
    case 'F': Py_RETURN_FALSE;
    case 'i': {
        if (left < 8) return malformed(d, "truncated int");
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits = bits << 8 | d->p[i];
        d->p += 8;
        return PyLong_FromLongLong((long long)bits);
    }
    case 'f': case 'c': {
        size_t n = tag == 'f' ? 8 : 16;
        if (left < n) return malformed(d, "truncated float");
        double parts[2];
        for (size_t k = 0; k < n / 8; k++) {
            uint64_t bits = 0;
            for (int i = 0; i < 8; i++) bits = bits << 8 | d->p[i];
            memcpy(&parts[k], &bits, sizeof bits);
            d->p += 8;
        }
        return tag == 'f' ? PyFloat_FromDouble(parts[0]) : PyComplex_FromDoubles(parts[0], parts[1]);
    }
    }
    if (left < 4) return malformed(d, "truncated length");
    size_t n = be32(d->p);
    d->p += 4;
    left -= 4;
    switch (tag) {
    case 'I': case 's': case 'b': case 'a': {
        if (n > left) return malformed(d, "length past the end");
        const char *bytes = (const char *)d->p;
        d->p += n;
        if (tag == 's') return PyUnicode_DecodeUTF8(bytes, (Py_ssize_t)n, "surrogatepass");
        if (tag == 'b') return PyBytes_FromStringAndSize(bytes, (Py_ssize_t)n);
        if (tag == 'a') return PyByteArray_FromStringAndSize(bytes, (Py_ssize_t)n);
        if (n == 0 || n > (1 << 26)) return malformed(d, "bad int length");
        for (size_t i = 0; i < n; i++) {
            char ch = bytes[i];
            if (!(isxdigit((unsigned char)ch) || (ch == '-' && i == 0 && n > 1)))
                return malformed(d, "bad int digits");
        }
        char *text = PyMem_Malloc(n + 1);
        if (text == NULL) return PyErr_NoMemory();
        memcpy(text, bytes, n);
        text[n] = 0;
        PyObject *x = PyLong_FromString(text, NULL, 16);
        PyMem_Free(text);
        return x;
    }
    case 'l': case 't': case 'e': case 'z': case 'Q': case 'd': case 'C': case 'O': case 'D':
        break;
    default:
        d->p -= 5;
        return malformed(d, "unknown tag");
    }
    int pairs = tag == 'd' || tag == 'C' || tag == 'O' || tag == 'D';
    if (n > left / (pairs ? 2 : 1)) return malformed(d, "more items than bytes left");
    if (++d->depth > VALUE_MAX_DEPTH) return malformed(d, "nested too deep");
    PyObject *out = NULL, *tmp;
    if (tag == 'l' || tag == 't' || tag == 'Q') {
        out = tag == 't' ? PyTuple_New((Py_ssize_t)n) : PyList_New((Py_ssize_t)n);
        for (size_t i = 0; out != NULL && i < n; i++) {
            PyObject *item = dec_value(d);
            if (item == NULL) Py_CLEAR(out);
            else if (tag == 't') PyTuple_SET_ITEM(out, (Py_ssize_t)i, item);
            else PyList_SET_ITEM(out, (Py_ssize_t)i, item);
        }
        if (out != NULL && tag == 'Q') {
            tmp = PyObject_CallOneArg(deque_type, out);
            Py_SETREF(out, tmp);
        }
    } else if (!pairs) {
        out = tag == 'e' ? PySet_New(NULL) : PyFrozenSet_New(NULL);
        for (size_t i = 0; out != NULL && i < n; i++) {
            PyObject *item = dec_value(d);
            if (item == NULL || PySet_Add(out, item) != 0) Py_CLEAR(out);
            Py_XDECREF(item);
        }
    } else {
        out = PyDict_New();
        for (size_t i = 0; out != NULL && i < n; i++) {
            PyObject *key = dec_value(d);
            PyObject *value = key == NULL ? NULL : dec_value(d);
            if (value == NULL || PyDict_SetItem(out, key, value) != 0) Py_CLEAR(out);
            Py_XDECREF(key), Py_XDECREF(value);
        }
        if (out != NULL && tag != 'd') {
            tmp = tag == 'D' ? PyObject_CallFunctionObjArgs(defaultdict_type, Py_None, out, NULL)
                             : PyObject_CallOneArg(tag == 'C' ? counter_type : ordered_type, out);
            Py_SETREF(out, tmp);
        }
    }
    d->depth--;
    if (out == NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear(); /* e.g. a list as a dict key or set item */
        return malformed(d, "unhashable key or item");
    }
    return out;
}

PyDoc_STRVAR(decode_doc,
"decode(data, start=0, end=len(data)) -> object\n\n"
"The value `encode` wrote into data[start:end], which it must fill exactly; ValueError if the\n"
"bytes are not such a value. Safe on any input: lengths are checked against what is left.");

static PyObject *py_decode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    Py_ssize_t start = 0, end = -1;
    if (!PyArg_ParseTuple(args, "y*|nn", &buf, &start, &end)) return NULL;
    if (end < 0 || end > buf.len) end = buf.len;
    if (start < 0 || start > end) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "bad range");
        return NULL;
    }
    if (counter_type == NULL) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_RuntimeError, "set_types() was not called");
        return NULL;
    }
    Dec d = {(const unsigned char *)buf.buf + start, (const unsigned char *)buf.buf + start,
             (const unsigned char *)buf.buf + end, 0};
    PyObject *out = dec_value(&d);
    if (out != NULL && d.p != d.end) Py_SETREF(out, malformed(&d, "bytes left over"));
    PyBuffer_Release(&buf);
    return out;
}

PyDoc_STRVAR(set_types_doc,
"set_types(Counter, OrderedDict, defaultdict, deque) -> None\n\n"
"The collections types `encode` accepts (by identity) and `decode` rebuilds; called once, by\n"
"codeserve.sandbox.values at import (in the zygote: before any candidate runs).");

static PyObject *py_set_types(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *c, *o, *dd, *q;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyType_Type, &c, &PyType_Type, &o, &PyType_Type,
                          &dd, &PyType_Type, &q))
        return NULL;
    Py_XSETREF(counter_type, Py_NewRef(c));
    Py_XSETREF(ordered_type, Py_NewRef(o));
    Py_XSETREF(defaultdict_type, Py_NewRef(dd));
    Py_XSETREF(deque_type, Py_NewRef(q));
    Py_RETURN_NONE;
}

/* ---- Call jobs in the candidate's process (codeserve/sandbox/calls.py) ---------------------- */
#define VALUE_INLINE_MAX (1 << 20)        /* values.INLINE_MAX */
#define VALUE_MAX_BYTES ((size_t)4 << 30) /* values.MAX_BYTES */
#define VALUE_MAX_NODES ((size_t)1 << 28) /* values.MAX_NODES */

typedef struct {
    char *data;
    size_t len, size;
    int fd, flush_each, failed;
} Records;

static void rec_flush(Records *r) {
    if (r->len && !r->failed && write_all(r->fd, r->data, r->len) != 0) r->failed = 1;
    r->len = 0;
}

static void rec_add(Records *r, const char *head, size_t n_head, const char *body, size_t n_body) {
    size_t need = 4 + n_head + n_body;
    if (r->len + need > r->size) {
        size_t want = r->size ? r->size : 4096;
        while (want < r->len + need) want *= 2;
        char *grown = PyMem_Realloc(r->data, want);
        if (grown == NULL) { /* out of memory: what we have, then nothing */
            rec_flush(r);
            r->failed = 1;
            return;
        }
        r->data = grown, r->size = want;
    }
    size_t total = n_head + n_body;
    unsigned char len[4] = {(unsigned char)(total >> 24), (unsigned char)(total >> 16),
                            (unsigned char)(total >> 8), (unsigned char)total};
    memcpy(r->data + r->len, len, 4);
    memcpy(r->data + r->len + 4, head, n_head);
    if (n_body) memcpy(r->data + r->len + 4 + n_head, body, n_body);
    r->len += need;
    if (r->flush_each) rec_flush(r);
}

/* A record the zygote's Python writes (rare paths: an exception, a refusal, printed output):
 * zygote.call_record(what, index, value, program) -> bytes. The exception, if any, is fetched
 * here and passed as `value`. */
static void rec_python(Records *r, PyObject *zygote, const char *what, Py_ssize_t index,
                       PyObject *value, const char *program, size_t n_program) {
    PyObject *type = NULL, *exc = NULL, *tb = NULL;
    if (value == NULL) {
        PyErr_Fetch(&type, &exc, &tb);
        PyErr_NormalizeException(&type, &exc, &tb);
        if (tb != NULL && exc != NULL) PyException_SetTraceback(exc, tb);
        value = exc != NULL ? exc : Py_None;
    }
    PyObject *made = PyObject_CallMethod(zygote, "call_record", "snOy#", what, index, value,
                                         program, (Py_ssize_t)n_program);
    Py_XDECREF(type), Py_XDECREF(exc), Py_XDECREF(tb);
    if (made != NULL && PyBytes_Check(made)) {
        /* already framed: append as it is */
        rec_flush(r);
        if (!r->failed && write_all(r->fd, PyBytes_AS_STRING(made), (size_t)PyBytes_GET_SIZE(made)))
            r->failed = 1;
    }
    Py_XDECREF(made);
    PyErr_Clear();
}

static int rec_value(Records *r, PyObject *zygote, Py_ssize_t index, PyObject *out, char kind,
                     const char *program, size_t n_program) {
    Enc e = {NULL, 0, 0, VALUE_MAX_BYTES, 0, 0, VALUE_MAX_NODES, NULL, VALUE_INLINE_MAX, 0, 0,
             {{0}, 0, {0}, 0}};
    unsigned char head[5 + 8] = {(unsigned char)kind, (unsigned char)(index >> 24),
                                 (unsigned char)(index >> 16), (unsigned char)(index >> 8),
                                 (unsigned char)index};
    int rc = 0;
    if (enc_value(&e, out) != 0) {
        if (e.refusal != NULL) {
            PyErr_Clear();
            rec_python(r, zygote, "refused", index, e.refusal, program, n_program);
            Py_DECREF(e.refusal);
        } else {
            rec_python(r, zygote, "encoding", index, NULL, program, n_program);
        }
        rc = -1;
    } else if (!e.hashing) {
        rec_add(r, (const char *)head, 5, e.data, e.len);
    } else { /* too big to send: "H", index, size, digest */
        unsigned char digest[32];
        uint64_t size = e.flushed + e.len;
        sha_update(&e.sha, (const unsigned char *)e.data, e.len);
        sha_final(&e.sha, digest);
        head[0] = 'H';
        for (int i = 0; i < 8; i++) head[5 + i] = (unsigned char)(size >> (56 - 8 * i));
        rec_add(r, (const char *)head, 13, (const char *)digest, 32);
    }
    PyMem_Free(e.data);
    return rc;
}

/* A call job run right here in the candidate's process, as candidate_exec.run_calls runs it
 * (same records, same order) but without its Python calls around the candidate's own code,
 * whose objects each cost a copy-on-write fault. `extra` is the job's "first stop [key]"; the
 * case (a calls.CallCase) is `inline_case` when it came with the job, else the zygote's
 * bundle of that key. Returns 0 when it cannot run the job (nothing of the candidate's ran:
 * Python's run_calls does it); once the program started it never returns (exits). */
static int run_calls(const Config *cfg, PyObject *zygote, PyObject *inline_case, int report_fd,
                     const char *program_code, size_t n_program_code, const char *extra,
                     size_t n_extra, int timed, const char *program, size_t n_program) {
    long first, stop;
    int key_at = -1;
    char head[64];
    size_t n_head = n_extra < sizeof head - 1 ? n_extra : sizeof head - 1;
    memcpy(head, extra, n_head);
    head[n_head] = 0;
    if (n_program_code == 0 || sscanf(head, "%ld %ld%n", &first, &stop, &key_at) != 2 ||
        key_at < 0)
        return 0;
    PyObject *cs = inline_case;
    if (cs == Py_None) {
        if ((size_t)key_at + 1 >= n_extra) return 0;
        PyObject *bundles = PyObject_GetAttrString(zygote, "bundles");
        PyObject *key = PyUnicode_DecodeUTF8(extra + key_at + 1, (Py_ssize_t)n_extra - key_at - 1,
                                             "surrogatepass");
        cs = bundles == NULL || key == NULL ? NULL : PyDict_GetItemWithError(bundles, key);
    }
    PyObject *entry = cs ? PyObject_GetAttrString(cs, "entry_point") : NULL;
    PyObject *inputs = cs ? PyObject_GetAttrString(cs, "inputs") : NULL;
    PyObject *exprs = cs ? PyObject_GetAttrString(cs, "exprs") : NULL;
    PyObject *setup = cs ? PyObject_GetAttrString(cs, "setup_code") : NULL;
    PyObject *truths = cs ? PyObject_GetAttrString(cs, "truths") : NULL;
    PyObject *presence = cs ? PyObject_GetAttrString(cs, "presence") : NULL;
    if (presence == NULL || !PyUnicode_Check(entry) || !PyList_Check(inputs) ||
        !PyDict_Check(exprs) || PyDict_GET_SIZE(exprs) != 0 || !PyAnySet_Check(truths)) {
        PyErr_Clear(); /* e.g. no such bundle, or inputs given as source: Python does it */
        return 0;
    }
    int presence_only = PyObject_IsTrue(presence) == 1;
    Py_ssize_t n_inputs = PyList_GET_SIZE(inputs);
    if (stop < 0 || stop > n_inputs) stop = n_inputs;
    if (first < 0) first = 0;
    /* From here on the candidate's code runs: never back to Python's run_calls. */
    Records r = {NULL, 0, 0, report_fd, timed, 0};
    PyObject *code = NULL, *globals = NULL, *done = NULL;
    if (PySys_SetObject("stdout", cfg->capture) == 0 && PySys_SetObject("stderr", cfg->capture) == 0)
        code = PyMarshal_ReadObjectFromString(program_code, (Py_ssize_t)n_program_code);
    if (code != NULL) globals = PyDict_New();
    if (globals != NULL && PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) == 0)
        done = PyEval_EvalCode(code, globals, globals);
    if (done != NULL && setup != Py_None) {
        Py_DECREF(done);
        done = PyEval_EvalCode(setup, globals, globals);
    }
    PyObject *fn = NULL;
    if (done == NULL) {
        rec_python(&r, zygote, "program", -1, NULL, program, n_program);
    } else {
        Py_DECREF(done);
        fn = PyDict_GetItemWithError(globals, entry);
        if (fn == NULL || !PyCallable_Check(fn)) {
            PyErr_Clear();
            rec_python(&r, zygote, "missing", -1, entry, program, n_program);
            fn = NULL;
        }
    }
    if (fn != NULL) {
        Py_INCREF(fn);
        rec_add(&r, "R", 1, NULL, 0);
        for (Py_ssize_t i = first; i < stop && !r.failed; i++) {
            PyObject *args = PySequence_Tuple(PyList_GET_ITEM(inputs, i));
            PyObject *out = args == NULL ? NULL : PyObject_Call(fn, args, NULL);
            Py_XDECREF(args);
            if (out == NULL) {
                rec_python(&r, zygote, "raised", i, NULL, program, n_program);
                break;
            }
            PyObject *index = PyLong_FromSsize_t(i);
            int truth = index == NULL ? -1 : PySet_Contains(truths, index);
            Py_XDECREF(index);
            char kind = 'V';
            if (truth == 1) { /* only its truth value is checked, and sent */
                int yes = PyObject_IsTrue(out);
                Py_SETREF(out, yes < 0 ? NULL : Py_NewRef(yes ? Py_True : Py_False));
                kind = 'B';
            } else if (presence_only && !PyBool_Check(out)) {
                Py_SETREF(out, Py_NewRef(out != Py_None ? Py_True : Py_False));
                kind = 'P';
            }
            if (truth < 0 || out == NULL) {
                Py_XDECREF(out);
                rec_python(&r, zygote, "raised", i, NULL, program, n_program);
                break;
            }
            int rc = rec_value(&r, zygote, i, out, kind, program, n_program);
            Py_DECREF(out);
            if (rc != 0) break;
        }
    }
    PyObject *size = PyObject_GetAttrString(cfg->capture, "size");
    long printed = size == NULL ? -1 : PyLong_AsLong(size);
    Py_XDECREF(size);
    PyErr_Clear();
    if (printed != 0) rec_python(&r, zygote, "output", -1, cfg->capture, program, n_program);
    rec_flush(&r);
    _exit(0);
}

PyDoc_STRVAR(prctl_doc,
"prctl(option, arg) -> None\n\n"
"prctl(2) with one argument; OSError on failure (codeserve.sandbox.privileges uses it, so that the\n"
"zygote need not import ctypes).");

static PyObject *set_prctl(PyObject *self, PyObject *args) {
    (void)self;
    int option;
    unsigned long arg;
    if (!PyArg_ParseTuple(args, "ik", &option, &arg)) return NULL;
    if (prctl(option, arg, 0UL, 0UL, 0UL) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"serve", serve, METH_VARARGS, serve_doc},
    {"prctl", set_prctl, METH_VARARGS, prctl_doc},
    {"encode", py_encode, METH_VARARGS, encode_doc},
    {"decode", py_decode, METH_VARARGS, decode_doc},
    {"set_types", py_set_types, METH_VARARGS, set_types_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_zygote_loop",
    "The sandbox zygote's job loop in C (see codeserve/sandbox/zygote.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__zygote_loop(void) { return PyModule_Create(&module); }
