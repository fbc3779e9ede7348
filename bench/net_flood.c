/* net_flood: sends 60-byte Ethernet frames (ethertype 0x88b5) to DST_MAC out of IFNAME
 * through an AF_PACKET socket until killed, for bench/net-tap's rx direction (the tap's
 * host side transmits them to the guest). Bursts of 64 frames with sendmmsg, then a 20 us
 * sleep, so it keeps the tap's queue fed without holding a core the VMM needs; frames the
 * guest does not take in time are dropped by the tap (its tx_dropped counter).
 *
 *   net_flood IFNAME DST_MAC      (run it in the tap's network namespace; needs root) */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BURST 64

int main(int argc, char **argv)
{
	unsigned char dst[6];
	if (argc != 3 || sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &dst[0], &dst[1], &dst[2],
				&dst[3], &dst[4], &dst[5]) != 6) {
		fprintf(stderr, "usage: net_flood IFNAME DST_MAC\n");
		return 2;
	}
	unsigned ifindex = if_nametoindex(argv[1]);
	if (!ifindex) {
		fprintf(stderr, "net_flood: no interface %s\n", argv[1]);
		return 1;
	}
	int fd = socket(AF_PACKET, SOCK_RAW, htons(0x88b5));
	if (fd < 0) {
		perror("net_flood: socket(AF_PACKET)");
		return 1;
	}
	struct sockaddr_ll sa = {.sll_family = AF_PACKET,
				 .sll_protocol = htons(0x88b5),
				 .sll_ifindex = (int)ifindex,
				 .sll_halen = 6};
	memcpy(sa.sll_addr, dst, 6);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("net_flood: bind");
		return 1;
	}
	static unsigned char frame[60];
	memcpy(frame, dst, 6);
	static const unsigned char src[6] = {0x02, 0, 0, 0, 0, 0x02};
	memcpy(frame + 6, src, 6);
	frame[12] = 0x88;
	frame[13] = 0xb5;
	struct iovec iov = {frame, sizeof(frame)};
	struct mmsghdr m[BURST];
	for (int i = 0; i < BURST; i++)
		m[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov, .msg_iovlen = 1}};
	prctl(PR_SET_TIMERSLACK, 1UL);
	struct timespec pause = {0, 20000};
	for (;;) {
		if (sendmmsg(fd, m, BURST, 0) < 0) {
			perror("net_flood: sendmmsg");
			return 1;
		}
		nanosleep(&pause, NULL);
	}
}
