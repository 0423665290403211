/* The pod sandbox's process for the end-to-end node (containerd's `sandbox_image`): holds the
 * pod's namespaces, reaps orphaned children, exits on SIGINT or SIGTERM. Nothing can be pulled on
 * the project's machines, so scripts/images.sh builds this (static, with the machine's C compiler)
 * into a local image instead of pulling registry.k8s.io/pause. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction stop_action = {.sa_handler = stop};
    struct sigaction reap_action = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (sigaction(SIGINT, &stop_action, NULL) < 0 || sigaction(SIGTERM, &stop_action, NULL) < 0 ||
        sigaction(SIGCHLD, &reap_action, NULL) < 0) {
        return 1;
    }
    for (;;) {
        pause();
    }
}
