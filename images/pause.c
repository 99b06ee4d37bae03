/*
 * pause: the process that holds a pod sandbox's namespaces open (containerd's sandbox_image). It does nothing
 * until SIGTERM or SIGINT, then exits 0. As PID 1 of a shared PID namespace it also reaps the zombies that
 * orphaned processes leave behind. Built static by images/build.sh (gcc -static -O2), so its image needs no
 * libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
    (void)sig;
    stopping = 1;
}

static void reap(int sig)
{
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int handle(int sig, void (*handler)(int))
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = sig == SIGCHLD ? SA_NOCLDSTOP | SA_RESTART : 0;
    return sigaction(sig, &action, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        puts("pause (canal-rs)");
        return 0;
    }
    if (handle(SIGTERM, on_stop) < 0 || handle(SIGINT, on_stop) < 0 || handle(SIGCHLD, reap) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    /* Block the stop signals outside sigsuspend, so that one arriving between the check and the wait is not
       lost. */
    sigset_t blocked, waiting;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &blocked, &waiting) < 0) {
        perror("pause: sigprocmask");
        return 1;
    }
    sigdelset(&waiting, SIGTERM);
    sigdelset(&waiting, SIGINT);
    sigdelset(&waiting, SIGCHLD);
    while (!stopping) {
        sigsuspend(&waiting);
    }
    return 0;
}
