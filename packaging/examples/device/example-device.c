/* example-device: a device maker's own program on libsrup-device.
 *
 * This folder is a starting point to copy: this file, a CMakeLists.txt
 * (find_package(srup-device)) and a Makefile (pkg-config srup-device),
 * built against the installed libsrup-device-dev alone. Debian installs it
 * in /usr/share/doc/libsrup-device-dev/examples/.
 *
 * Usage: example-device CONFIG DATA_DIR
 *   CONFIG    the device's INI file, as srup-device reads it
 *   DATA_DIR  where DATA from the server is written, one file per data ID
 *
 * It answers ACTION 1 (0x20; any other action is unknown, 0x2E), writes
 * each DATA to DATA_DIR/<data ID> (0x30, taken: the library sends no
 * RESPONSE for it, as the protocol has none; 0x3F, unknown, is sent),
 * answers ID_REQ with its name, and leaves every other command to the
 * library's defaults. It runs in a
 * plain poll() loop and stops on SIGTERM or SIGINT, read through a
 * signalfd: the library installs no signal handlers of its own. */
#ifndef _GNU_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <srup/srup_device.h>

static int on_identification(struct srup_device *dev, struct srup_device_request *req,
			     void *user)
{
	char text[80];

	(void)dev, (void)user;
	snprintf(text, sizeof text, "example-device on libsrup-device %s", srup_device_version());
	srup_device_request_send_data(req, "IDENTIFICATION_RESPONSE", text, strlen(text));
	return 0; /* ID_REQ gets no RESPONSE: the DATA was the answer */
}

static int on_action(struct srup_device *dev, struct srup_device_request *req,
		     uint8_t action_id, void *user)
{
	(void)dev, (void)req, (void)user;
	printf("action %u\n", (unsigned)action_id);
	return action_id == 1 ? 0x20 /* done */ : 0x2E /* unknown action */;
}

static int on_data(struct srup_device *dev, struct srup_device_request *req,
		   const char *data_id, const void *data, size_t len, void *user)
{
	const char *dir = user;
	char path[4096];
	size_t done = 0;
	int fd;

	(void)dev, (void)req;
	/* The data ID comes from the network: only a plain name becomes a file. */
	if (!data_id[0] || strspn(data_id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					   "0123456789_-") != strlen(data_id) ||
	    snprintf(path, sizeof path, "%s/%s", dir, data_id) >= (int)sizeof path)
		return 0x3F; /* unknown data ID */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	while (fd >= 0 && done < len) {
		ssize_t n = write(fd, (const char *)data + done, len - done);
		if (n < 0 && errno != EINTR)
			break;
		done += n > 0 ? (size_t)n : 0;
	}
	if (fd < 0 || done < len || close(fd) != 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		if (fd >= 0 && done < len)
			close(fd);
		return 0x3F; /* DATA has no failure status: not taken */
	}
	printf("data %s: %zu bytes in %s\n", data_id, len, path);
	return 0x30; /* taken (no RESPONSE goes out) */
}

static void on_connection(struct srup_device *dev, bool connected, const char *broker,
			  void *user)
{
	(void)user;
	printf("%s %s as %016llx\n", connected ? "connected to" : "lost", broker ? broker : "-",
	       (unsigned long long)srup_device_id(dev));
}

int main(int argc, char **argv)
{
	const struct srup_device_callbacks callbacks = {
		.size = sizeof callbacks,
		.identification = on_identification,
		.action = on_action,
		.data = on_data,
	};
	struct srup_device *dev = NULL;
	char detail[1024] = "";
	enum srup_device_err err;
	sigset_t stop_signals;
	int sfd, rc = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: %s CONFIG DATA_DIR\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Blocked before the device exists, so that the library's threads
	 * inherit the mask and the signals reach the signalfd only. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigprocmask(SIG_BLOCK, &stop_signals, NULL);
	sfd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
	if (sfd < 0) {
		perror("signalfd");
		return 1;
	}
	err = srup_device_new_from_file(argv[1], &dev, detail, sizeof detail);
	if (err != SRUP_DEVICE_OK) {
		fprintf(stderr, "%s: %s\n%s\n", argv[1], srup_device_strerror(err), detail);
		return 1;
	}
	srup_device_set_callbacks(dev, &callbacks, argv[2], NULL);
	srup_device_on_connection(dev, on_connection, NULL, NULL);
	err = srup_device_start(dev);
	while (err == SRUP_DEVICE_OK) {
		struct pollfd fds[2] = { { .fd = srup_device_get_fd(dev), .events = POLLIN },
					 { .fd = sfd, .events = POLLIN } };

		if (poll(fds, 2, srup_device_get_timeout_ms(dev)) < 0 && errno != EINTR) {
			perror("poll");
			rc = 1;
			break;
		}
		if (fds[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
				printf("stopping on signal %u\n", si.ssi_signo);
			break;
		}
		err = srup_device_process(dev);
	}
	if (err != SRUP_DEVICE_OK) {
		fprintf(stderr, "srup-device: %s\n", srup_device_strerror(err));
		rc = 1;
	}
	srup_device_flush(dev, 2000); /* the last answers reach the broker */
	srup_device_free(dev);
	close(sfd);
	return rc;
}
