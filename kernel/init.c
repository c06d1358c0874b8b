/*
 * cove-init: /init of the guest test initramfs (kernel/build-initramfs.sh).
 *
 * Freestanding and static: no libc, only raw `syscall` instructions.
 * Build: gcc -static -nostdlib -Os -fno-asynchronous-unwind-tables -o init init.c
 *
 * It prints one line on the console and powers the machine off. Where guest
 * userspace runs (real VT-x/AMD-V) the VMM then exits with status 0. On hosts
 * where guest user mode cannot make system calls (see shared/PVM-NOTES.md)
 * the first syscall faults, the kernel panics and, with panic=-1, reboots.
 *
 * With COVE_INIT=spin on the kernel command line (the kernel hands unknown
 * key=value options to init as environment variables) it makes no system
 * call at all and spins forever, so the kernel keeps running with its console
 * open: tests then drive the guest kernel itself (magic SysRq over the serial
 * line, devices), on every host.
 */

#define SYS_write 1
#define SYS_open 2
#define SYS_pause 34
#define SYS_sync 162
#define SYS_reboot 169
#define SYS_getpid 39
#define SYS_exit 60

#define O_WRONLY 01
#define O_NOCTTY 0400

#define LINUX_REBOOT_MAGIC1 0xfee1deadL
#define LINUX_REBOOT_MAGIC2 672274793L
#define LINUX_REBOOT_CMD_POWER_OFF 0x4321fedcL

static long sys4(long nr, long a, long b, long c, long d)
{
	long ret;
	register long r10 __asm__("r10") = d;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

static const char message[] = "cove-init: userspace is running\n";

static int is_spin_request(const char *env)
{
	static const char want[] = "COVE_INIT=spin";
	unsigned long i;

	for (i = 0; i < sizeof(want); i++)
		if (env[i] != want[i])
			return 0;
	return 1;
}

/* The initial stack: argc, argv[argc], NULL, envp..., NULL. */
__attribute__((noreturn, used)) void cove_init_main(long *stack)
{
	long argc = stack[0];
	char **envp = (char **)(stack + argc + 2);

	for (; *envp; envp++) {
		if (is_spin_request(*envp))
			for (;;)
				__asm__ volatile("pause");
	}

	/* Only ever power off a VM: run by mistake on a host, do nothing. */
	if (sys4(SYS_getpid, 0, 0, 0, 0) != 1)
		sys4(SYS_exit, 1, 0, 0, 0);

	/* The kernel opened /dev/console as fd 0/1/2; open it again in case it could not. */
	long fd = sys4(SYS_open, (long)"/dev/console", O_WRONLY | O_NOCTTY, 0, 0);

	if (fd < 0)
		fd = 1;
	sys4(SYS_write, fd, (long)message, sizeof(message) - 1, 0);
	sys4(SYS_sync, 0, 0, 0, 0);
	sys4(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
	     LINUX_REBOOT_CMD_POWER_OFF, 0);
	/* PID 1 must never exit: that would panic the kernel. */
	for (;;)
		sys4(SYS_pause, 0, 0, 0, 0);
}

/* Entry point: align the stack as the ABI expects at a call, then go to C. */
__asm__(".text\n"
	".globl _start\n"
	".type _start, @function\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call cove_init_main\n"
	"	hlt\n");
