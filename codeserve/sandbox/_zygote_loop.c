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
 * op (u8), timeout (f64), memory_mb, cap (u32), all big-endian; then JSON, blob, tests, code
 * and program code. For a candidate (op > 0), blob is its program, tests its task's checking
 * code, and code and program code those two compiled by the harness; a control frame (op 0)
 * has JSON and a blob. Frames out: HEADER (n_json, n_blob: u32) + JSON + blob.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <marshal.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
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

#define REQUEST_SIZE 37
#define OP_CONTROL 0
#define OP_EXEC 1 /* frames.OPS["exec"] */
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
static Tests tests_cache[MAX_TESTS];
static int tests_next;

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

/* The compiled checking code for `text` (new reference), loaded from the harness's `code` by
 * the zygote's Python on first sight; NULL with an exception set if that call failed. */
static PyObject *tests_code(PyObject *zygote, const char *text, size_t len, const char *code,
                            size_t code_len) {
    if (len == 0) Py_RETURN_NONE;
    for (int i = 0; i < MAX_TESTS; i++) {
        Tests *t = &tests_cache[i];
        if (t->text != NULL && t->len == len && memcmp(t->text, text, len) == 0) {
            Py_INCREF(t->code);
            return t->code;
        }
    }
    PyObject *loaded = PyObject_CallMethod(zygote, "load_tests", "y#", code, (Py_ssize_t)code_len);
    if (loaded == NULL) return NULL;
    char *copy = malloc(len);
    if (copy == NULL) return loaded;  /* works, just not cached */
    memcpy(copy, text, len);
    Tests *slot = &tests_cache[tests_next];
    tests_next = (tests_next + 1) % MAX_TESTS;
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

/* Wait for the child at most until `deadline`, reading its report (at most `cap` bytes). */
static int supervise(pid_t pid, int rfd, double deadline, size_t cap, char **data, size_t *len,
                     int *status) {
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    size_t size = 0;
    int timed_out = 1, oom = 0;
    static char chunk[1 << 16];
    struct pollfd polled[3] = {
        {.fd = 0, .events = 0}, /* the harness: a hang-up means it died */
        {.fd = pidfd, .events = POLLIN},
        {.fd = rfd, .events = POLLIN},
    };
    for (;;) {
        double remaining = deadline - now();
        if (remaining <= 0) break;
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
"tests_code, program_code, setup_failure, ran), where ran is None, or (exception or None,) when\n"
"the program already ran (an exec job: see run_exec).\n"
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
        size_t size = REQUEST_SIZE + n_json + n_blob + n_tests + n_code + n_program_code;
        if (!fill(size)) Py_RETURN_NONE;
        const char *json = in_buf + in_start + REQUEST_SIZE, *blob = json + n_json,
                   *tests = blob + n_blob, *compiled = tests + n_tests,
                   *program_code = compiled + n_code;
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
        PyObject *code = tests_code(zygote, tests, n_tests, compiled, n_code);
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
            const char *failed = setup_child(&cfg, timeout, memory_mb ? memory_mb : cfg.memory_mb,
                                             vm_bytes, why, sizeof why);
            PyObject *ran = Py_NewRef(Py_None); /* not run: Python's execute runs it */
            PyObject *raised = NULL;
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
            PyObject *checks = PyUnicode_DecodeUTF8(tests, (Py_ssize_t)n_tests, "surrogatepass");
            PyObject *marshalled =
                PyBytes_FromStringAndSize(program_code, (Py_ssize_t)n_program_code);
            if (extra == NULL || program == NULL || checks == NULL || marshalled == NULL) {
                Py_XDECREF(extra), Py_XDECREF(program), Py_XDECREF(checks);
                Py_XDECREF(marshalled), Py_DECREF(code), Py_XDECREF(ran);
                return NULL;
            }
            return Py_BuildValue("iiNNNNNzN", fds[1], op, extra, program, checks, code,
                                 marshalled, failed, ran);
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
        int status = -1;
        int timed_out = supervise(pid, fds[0], started + timeout, cap, &data, &len, &status);
        close(fds[0]);
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
        char reply[160];
        int passed = !timed_out && (Py_ssize_t)len == cfg.passed_len &&
                     memcmp(data, cfg.passed, len) == 0;
        int body = passed
            ? snprintf(reply + 8, sizeof reply - 8,
                       "{\"status\": \"passed\", \"elapsed_s\": %.6f}", elapsed)
            : snprintf(reply + 8, sizeof reply - 8,
                       "{\"wait_status\": %d, \"timed_out\": %s, \"elapsed_s\": %.6f}", status,
                       timed_out ? "true" : "false", elapsed);
        if (passed) len = 0;
        uint32_t lengths[2] = {htonl((uint32_t)body), htonl((uint32_t)len)};
        memcpy(reply, lengths, 8);
        int failed = write_all(1, reply, 8 + (size_t)body) != 0 || write_all(1, data, len) != 0;
        free(data);
        if (failed) Py_RETURN_NONE; /* the harness is gone */
    }
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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_zygote_loop",
    "The sandbox zygote's job loop in C (see codeserve/sandbox/zygote.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__zygote_loop(void) { return PyModule_Create(&module); }
