/* cores.c - how many cores this process may use: the CPUs its affinity mask allows
 * (taskset, a container's cpuset), and no more than its cgroup's CPU quota (docker
 * --cpus, a Kubernetes limit), cgroup v2 or v1. The machine's core count overstates both,
 * and threads beyond them only wait for each other. */
#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "parallel.h"

/* Reads two numbers from path ("max" reads as no limit); false when absent. */
static bool read_quota(const char *path, double *quota, double *period, bool v2)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char a[32] = "", b[32] = "";
    bool ok = v2 ? fscanf(f, "%31s %31s", a, b) == 2 : fscanf(f, "%31s", a) == 1;
    fclose(f);
    if (!ok)
        return false;
    *quota = strcmp(a, "max") == 0 ? -1 : atof(a);
    if (v2)
        *period = atof(b);
    return true;
}

/* The cgroup path of `controller` ("" for v2's unified line) from /proc/self/cgroup. */
static bool cgroup_path(const char *controller, char *out, size_t n)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        const char *names = c1 + 1;
        bool match = names[0] == 0 && !controller[0];
        /* v1 lists controllers joined by commas ("cpu,cpuacct"); "cpuset" is not "cpu" */
        for (const char *p = names; controller[0] && *p && !match;) {
            size_t len = strcspn(p, ",");
            match = len == strlen(controller) && strncmp(p, controller, len) == 0;
            p += len + (p[len] == ',');
        }
        if (match) {
            c2[1 + strcspn(c2 + 1, "\n")] = 0;
            snprintf(out, n, "%s", c2 + 1);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* The tightest quota / period along one hierarchy's cgroup path and its parents (v2:
 * cpu.max; v1: the cpu controller's cfs files); 0 when none applies. */
static double hierarchy_quota(bool v2)
{
    char path[1024], file[1400];
    double best = 0;
    if (!cgroup_path(v2 ? "" : "cpu", path, sizeof path))
        return 0;
    for (;;) {
        double quota = -1, period = 100000;
        bool ok;
        if (v2) {
            snprintf(file, sizeof file, "/sys/fs/cgroup%s/cpu.max", path);
            ok = read_quota(file, &quota, &period, true);
        } else {
            snprintf(file, sizeof file, "/sys/fs/cgroup/cpu%s/cpu.cfs_period_us", path);
            ok = read_quota(file, &period, NULL, false);
            snprintf(file, sizeof file, "/sys/fs/cgroup/cpu%s/cpu.cfs_quota_us", path);
            ok = ok && read_quota(file, &quota, NULL, false);
        }
        if (ok && quota > 0 && period > 0 && (best == 0 || quota / period < best))
            best = quota / period;
        char *slash = strrchr(path, '/');
        if (!slash || slash == path)
            break;
        *slash = 0;
    }
    return best;
}

/* The tighter of the v2 and v1 quotas (a machine may mount both); 0 when none. */
static double quota_cores(void)
{
    double v2 = hierarchy_quota(true), v1 = hierarchy_quota(false);
    return v2 > 0 && (v1 <= 0 || v2 < v1) ? v2 : v1;
}

int ct_usable_cores(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int n = online > 0 ? (int)online : 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0 && CPU_COUNT(&set) < n)
        n = CPU_COUNT(&set);
    double quota = quota_cores();
    if (quota > 0 && ceil(quota) < n)
        n = (int)ceil(quota);
    return n < 1 ? 1 : n;
}
